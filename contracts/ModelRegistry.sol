// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ModelRegistry
/// @notice Models by id: the 32-byte digest of the manifest's CIDv1. Each record names its
///         owner, the manifest CID, free-form metadata, whether its comparison policy is `exact`
///         (which makes two different outputs for one input provable equivocation), the
///         previous version it replaces, and whether it is deprecated.
/// @dev The `exact` flag and `manifestCid` are the registrant's claims: a contract can't read a
///      manifest, so nothing here checks that `manifestCid` hashes to `id` or that the manifest's
///      policy really is `exact`, and whoever registers an id first sets them for good.
///      DisputeManager's equivocation slashing trusts the flag; a provider must check a model's
///      manifest against it before offering the model (see docs/chain.md).
contract ModelRegistry {
    struct Model {
        address owner;
        bool exact;
        bool deprecated;
        bytes32 previous;
        string manifestCid;
        string metadata;
    }

    mapping(bytes32 id => Model) private _models;

    event ModelRegistered(
        bytes32 indexed id,
        address indexed owner,
        bytes32 indexed previous,
        string manifestCid,
        string metadata,
        bool exact
    );
    event ModelDeprecated(bytes32 indexed id);

    error ZeroModelId();
    error EmptyManifestCid();
    error ModelExists(bytes32 id);
    error UnknownModel(bytes32 id);
    error NotModelOwner(bytes32 id, address caller);
    error AlreadyDeprecated(bytes32 id);

    /// @notice Registers model `id`; `previous` (zero for a first version) must be a model the
    ///         caller owns, which this one supersedes.
    function register(
        bytes32 id,
        string calldata manifestCid,
        string calldata metadata,
        bool exact,
        bytes32 previous
    ) external {
        if (id == bytes32(0)) revert ZeroModelId();
        if (bytes(manifestCid).length == 0) revert EmptyManifestCid();
        if (_models[id].owner != address(0)) revert ModelExists(id);
        if (previous != bytes32(0)) {
            address prevOwner = _models[previous].owner;
            if (prevOwner == address(0)) revert UnknownModel(previous);
            if (prevOwner != msg.sender) revert NotModelOwner(previous, msg.sender);
        }
        _models[id] = Model(msg.sender, exact, false, previous, manifestCid, metadata);
        emit ModelRegistered(id, msg.sender, previous, manifestCid, metadata, exact);
    }

    /// @notice Marks model `id` deprecated: providers can no longer add offers for it.
    function deprecate(bytes32 id) external {
        Model storage m = _models[id];
        if (m.owner == address(0)) revert UnknownModel(id);
        if (m.owner != msg.sender) revert NotModelOwner(id, msg.sender);
        if (m.deprecated) revert AlreadyDeprecated(id);
        m.deprecated = true;
        emit ModelDeprecated(id);
    }

    function getModel(bytes32 id) external view returns (Model memory) {
        if (_models[id].owner == address(0)) revert UnknownModel(id);
        return _models[id];
    }

    function exists(bytes32 id) external view returns (bool) {
        return _models[id].owner != address(0);
    }

    function isDeprecated(bytes32 id) external view returns (bool) {
        return _models[id].deprecated;
    }

    /// @notice Whether the model's comparison policy is `exact` (false for unknown models).
    function isExact(bytes32 id) external view returns (bool) {
        return _models[id].exact;
    }
}
