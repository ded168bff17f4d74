// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title DisputeManaged
/// @notice A contract some of whose functions only the DisputeManager may call (slashing, locking
///         stake, convicting). The DisputeManager is deployed after it and references it, so the
///         deployer wires it once, after both exist.
abstract contract DisputeManaged {
    address public immutable deployer;
    address public disputeManager;

    event DisputeManagerSet(address disputeManager);

    error NotDeployer();
    error AlreadyWired();
    error NotDisputeManager(address caller);
    error ZeroAddress();

    modifier onlyDisputeManager() {
        if (msg.sender != disputeManager) revert NotDisputeManager(msg.sender);
        _;
    }

    constructor() {
        deployer = msg.sender;
    }

    /// @notice Wires the DisputeManager, once, by the deployer.
    function setDisputeManager(address disputeManager_) external {
        if (msg.sender != deployer) revert NotDeployer();
        if (disputeManager != address(0)) revert AlreadyWired();
        if (disputeManager_ == address(0)) revert ZeroAddress();
        disputeManager = disputeManager_;
        emit DisputeManagerSet(disputeManager_);
    }
}
