// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReceiptLib} from "./ReceiptLib.sol";
import {ProviderRegistry} from "./ProviderRegistry.sol";

/// @title ReceiptLedger
/// @notice Batch roots: a provider commits the Merkle root of a batch of receipts with their
///         count and a URI where the receipts (and their inputs) are served for the challenge
///         window. Its address is the EIP-712 verifying contract of receipts, so it is also where
///         receipt digests are computed for everyone (DisputeManager included).
contract ReceiptLedger is EIP712 {
    /// @dev One storage slot plus the root: provider (20 bytes), count (6), committedAt (6).
    struct Batch {
        address provider;
        uint48 count;
        uint48 committedAt;
        bytes32 root;
    }

    ProviderRegistry public immutable providers;
    Batch[] private _batches;

    event BatchCommitted(
        uint256 indexed batchId,
        address indexed provider,
        bytes32 indexed root,
        uint256 count,
        string uri
    );

    error NotRegistered(address provider);
    error ZeroRoot();
    error ZeroCount();
    error UnknownBatch(uint256 batchId);

    constructor(ProviderRegistry providers_) EIP712("Glassbox", "1") {
        providers = providers_;
    }

    /// @notice Commits a batch of `count` receipts under `root`; returns its id.
    function commitBatch(bytes32 root, uint48 count, string calldata uri) external returns (uint256 batchId) {
        if (!providers.isRegistered(msg.sender)) revert NotRegistered(msg.sender);
        if (root == bytes32(0)) revert ZeroRoot();
        if (count == 0) revert ZeroCount();
        batchId = _batches.length;
        _batches.push(Batch(msg.sender, count, uint48(block.timestamp), root));
        emit BatchCommitted(batchId, msg.sender, root, count, uri);
    }

    function batchCount() external view returns (uint256) {
        return _batches.length;
    }

    function getBatch(uint256 batchId) external view returns (Batch memory) {
        if (batchId >= _batches.length) revert UnknownBatch(batchId);
        return _batches[batchId];
    }

    /// @notice Whether the receipt with struct hash `receiptHash` is in batch `batchId`.
    function verifyInclusion(uint256 batchId, bytes32 receiptHash, bytes32[] calldata proof) public view returns (bool) {
        if (batchId >= _batches.length) revert UnknownBatch(batchId);
        return MerkleProof.verifyCalldata(proof, _batches[batchId].root, ReceiptLib.leaf(receiptHash));
    }

    /// @notice Whether `receipt` is in batch `batchId` and that batch was committed by the
    ///         receipt's provider (committing a root endorses every receipt under it).
    function isCommitted(uint256 batchId, ReceiptLib.Receipt calldata receipt, bytes32[] calldata proof) external view returns (bool) {
        if (batchId >= _batches.length) revert UnknownBatch(batchId);
        return _batches[batchId].provider == receipt.provider && verifyInclusion(batchId, ReceiptLib.hash(receipt), proof);
    }

    /// @notice The receipt's EIP-712 struct hash.
    function hashReceipt(ReceiptLib.Receipt calldata receipt) external pure returns (bytes32) {
        return ReceiptLib.hash(receipt);
    }

    /// @notice The EIP-712 digest a provider signs.
    function receiptDigest(ReceiptLib.Receipt calldata receipt) public view returns (bytes32) {
        return _hashTypedDataV4(ReceiptLib.hash(receipt));
    }

    /// @notice The address whose key signed `receipt`, or zero for a malformed signature.
    function recoverSigner(ReceiptLib.Receipt calldata receipt, bytes calldata signature) external view returns (address) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(receiptDigest(receipt), signature);
        return err == ECDSA.RecoverError.NoError ? signer : address(0);
    }
}
