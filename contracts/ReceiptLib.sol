// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ReceiptLib
/// @notice The one Solidity definition of the receipt (src/protocol/receipt.ts is the TypeScript
///         one; both must hash the same struct). Signed as EIP-712 typed data under the domain
///         `Glassbox` v1 whose verifying contract is the ReceiptLedger.
library ReceiptLib {
    struct Receipt {
        bytes32 requestId;
        address provider;
        address client;
        bytes32 model;
        bytes32 inputHash;
        bytes32 outputHash;
        bytes32 paramsHash;
        bytes32 runtime;
        bytes32 traceRoot;
        uint256 price;
        uint64 timestamp;
    }

    bytes32 internal constant TYPEHASH = keccak256(
        "Receipt(bytes32 requestId,address provider,address client,bytes32 model,bytes32 inputHash,bytes32 outputHash,bytes32 paramsHash,bytes32 runtime,bytes32 traceRoot,uint256 price,uint64 timestamp)"
    );

    /// @notice The EIP-712 struct hash (the leaf content of batches).
    function hash(Receipt calldata r) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                TYPEHASH,
                r.requestId,
                r.provider,
                r.client,
                r.model,
                r.inputHash,
                r.outputHash,
                r.paramsHash,
                r.runtime,
                r.traceRoot,
                r.price,
                r.timestamp
            )
        );
    }

    /// @notice The batch Merkle leaf of a receipt struct hash, in OpenZeppelin's standard tree
    ///         form: keccak256(bytes.concat(keccak256(abi.encode(structHash)))).
    function leaf(bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(structHash))));
    }
}
