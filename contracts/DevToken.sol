// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title DevToken
/// @notice The ERC-20 that stands in for a real deployment's token on the devnet. Anyone may
///         mint: it is a faucet, and must never be deployed where its balance means anything.
contract DevToken is ERC20 {
    constructor() ERC20("Glassbox Dev Token", "GBXD") {}

    /// @notice Mints `amount` base units to `to` (devnet only; no access control on purpose).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
