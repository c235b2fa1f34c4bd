// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IERC2981} from "@openzeppelin/contracts/interfaces/IERC2981.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {ERC6551AccountLib} from "erc6551/lib/ERC6551AccountLib.sol";

/// @title Anima agents as ERC-721 tokens
/// @notice One token per Anima agent. The token id is derived from the agent's id
/// (`uint256(keccak256(agentId))`), so minting the same agent twice reverts inside ERC-721's
/// own existence check: a retried mint can never create a second token, and no mapping from
/// agent to token is stored. Each token carries the keccak-256 hash of its current character
/// card and a version that counts the updates since the mint (0 = the card anchored at mint).
/// The holder (or an approved operator) updates the hash directly, or signs an EIP-712
/// `CardUpdate` that anyone (the platform) relays, so edits cost the holder no gas; the current
/// version is the signature's nonce, so a signature is good for exactly one update.
/// @dev Royalties (ERC-2981) go to the token's ERC-6551 account. That address is a pure
/// function of the token id (CREATE2 through the registry), so it costs no storage per token:
/// a receiver stored per token would add a storage slot (about 22k gas) to every mint. It also
/// means royalties accrue to the agent's own wallet, which whoever holds the token controls.
contract AgentNFT is ERC721, AccessControl, EIP712, IERC2981, IERC4906 {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    bytes32 public constant CARD_UPDATE_TYPEHASH =
        keccak256("CardUpdate(uint256 tokenId,bytes32 cardHash,uint64 version,uint256 deadline)");
    uint96 public constant MAX_ROYALTY_BPS = 10_000;

    struct Card {
        bytes32 hash;
        uint64 version;
    }

    /// @notice The ERC-6551 registry and account implementation of the token-bound accounts.
    address public immutable accountRegistry;
    address public immutable accountImplementation;

    mapping(uint256 tokenId => Card) private _cards;
    string private _baseTokenURI;
    uint96 private _royaltyBps;

    /// @notice A token was minted for an agent, with the hash of the card it was minted with
    /// (the owner is in ERC-721's own `Transfer` from address 0, emitted just before).
    event AgentMinted(uint256 indexed tokenId, bytes32 cardHash);
    /// @notice The card hash of a token changed; `by` is the holder, operator or signer.
    event CardUpdated(uint256 indexed tokenId, uint64 version, bytes32 cardHash, address indexed by);
    event RoyaltyChanged(uint96 bps);
    event BaseURIChanged(string baseURI);

    error NotOwnerOrApproved(uint256 tokenId, address account);
    error StaleCardVersion(uint256 tokenId, uint64 current, uint64 given);
    error SignatureExpired(uint256 deadline);
    error InvalidCardSignature(uint256 tokenId, address signer);
    error RoyaltyTooHigh(uint96 bps);

    constructor(
        string memory name_,
        string memory symbol_,
        string memory baseURI_,
        address admin,
        address minter,
        uint96 royaltyBps_,
        address registry,
        address implementation
    ) ERC721(name_, symbol_) EIP712("Anima AgentNFT", "1") {
        if (royaltyBps_ > MAX_ROYALTY_BPS) revert RoyaltyTooHigh(royaltyBps_);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, minter);
        _baseTokenURI = baseURI_;
        _royaltyBps = royaltyBps_;
        accountRegistry = registry;
        accountImplementation = implementation;
    }

    // ----- minting -------------------------------------------------------------------------

    /// @notice The token id an agent has (or will have once minted): the keccak-256 hash of
    /// the agent's id, a UUID passed as its 16 bytes.
    function tokenIdOf(bytes16 agentId) public pure returns (uint256) {
        return uint256(keccak256(abi.encodePacked(agentId)));
    }

    /// @notice Mint the agent `agentId` to `to` with the hash of its card. Reverts with
    /// `ERC721InvalidSender(address(0))` if this agent was minted before.
    function mint(address to, bytes16 agentId, bytes32 cardHash)
        external
        onlyRole(MINTER_ROLE)
        returns (uint256 tokenId)
    {
        tokenId = tokenIdOf(agentId);
        _mint(to, tokenId);
        _cards[tokenId].hash = cardHash;
        emit AgentMinted(tokenId, cardHash);
    }

    // ----- card hash -----------------------------------------------------------------------

    /// @notice The current card hash and version of a token (reverts if it does not exist).
    function cardOf(uint256 tokenId) external view returns (bytes32 hash, uint64 version) {
        _requireOwned(tokenId);
        Card storage card = _cards[tokenId];
        return (card.hash, card.version);
    }

    /// @notice Update the card hash, sent by the holder or an approved operator.
    function updateCard(uint256 tokenId, bytes32 cardHash) external {
        address owner = _requireOwned(tokenId);
        if (!_isAuthorized(owner, msg.sender, tokenId)) revert NotOwnerOrApproved(tokenId, msg.sender);
        _setCard(tokenId, cardHash, msg.sender);
    }

    /// @notice Update the card hash with the EIP-712 signature of the holder or an approved
    /// operator (`signer`; an ERC-1271 contract wallet works too), sent by anyone.
    /// `version` must be the token's current version: it is the signature's nonce.
    function updateCardWithSig(
        uint256 tokenId,
        bytes32 cardHash,
        uint64 version,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) external {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        address owner = _requireOwned(tokenId);
        if (!_isAuthorized(owner, signer, tokenId)) revert NotOwnerOrApproved(tokenId, signer);
        uint64 current = _cards[tokenId].version;
        if (version != current) revert StaleCardVersion(tokenId, current, version);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(CARD_UPDATE_TYPEHASH, tokenId, cardHash, version, deadline))
        );
        if (!SignatureChecker.isValidSignatureNow(signer, digest, signature)) {
            revert InvalidCardSignature(tokenId, signer);
        }
        _setCard(tokenId, cardHash, signer);
    }

    function _setCard(uint256 tokenId, bytes32 cardHash, address by) private {
        Card storage card = _cards[tokenId];
        uint64 version = card.version + 1;
        card.hash = cardHash;
        card.version = version;
        emit CardUpdated(tokenId, version, cardHash, by);
        emit MetadataUpdate(tokenId);
    }

    // ----- token-bound account and royalties ---------------------------------------------------

    /// @notice The token's ERC-6551 account (salt 0, this chain): deployed or not, its address
    /// is fixed, and it answers to whoever holds the token.
    function tokenAccount(uint256 tokenId) public view returns (address) {
        return ERC6551AccountLib.computeAddress(
            accountRegistry, accountImplementation, bytes32(0), block.chainid, address(this), tokenId
        );
    }

    /// @inheritdoc IERC2981
    function royaltyInfo(uint256 tokenId, uint256 salePrice)
        external
        view
        returns (address receiver, uint256 royaltyAmount)
    {
        _requireOwned(tokenId);
        return (tokenAccount(tokenId), (salePrice * _royaltyBps) / MAX_ROYALTY_BPS);
    }

    function royaltyBps() external view returns (uint96) {
        return _royaltyBps;
    }

    function setRoyaltyBps(uint96 bps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (bps > MAX_ROYALTY_BPS) revert RoyaltyTooHigh(bps);
        _royaltyBps = bps;
        emit RoyaltyChanged(bps);
    }

    // ----- metadata ----------------------------------------------------------------------------

    function setBaseURI(string calldata baseURI_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _baseTokenURI = baseURI_;
        emit BaseURIChanged(baseURI_);
        emit BatchMetadataUpdate(0, type(uint256).max);
    }

    function _baseURI() internal view override returns (string memory) {
        return _baseTokenURI;
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721, AccessControl, IERC165)
        returns (bool)
    {
        return interfaceId == type(IERC2981).interfaceId || interfaceId == bytes4(0x49064906)
            || super.supportsInterface(interfaceId);
    }
}
