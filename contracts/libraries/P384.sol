// SPDX-License-Identifier: Apache-2.0
// cvm-attest: ECDSA P-384 (secp384r1) signature verification for the EVM on native 256-bit words.
pragma solidity ^0.8.24;

/**
 * @title P384
 * @notice ECDSA signature verification over NIST P-384 (secp384r1; FIPS 186-5, SEC 2 v2 section 3.2.4)
 * for SHA-384 digests (SEC 1 v2 section 4.1.4): what AMD SEV-SNP firmware signs attestation reports
 * with (VCEK/VLEK keys, AMD SEV-SNP ABI spec section 7.3 and Table 22).
 *
 * Two ways to verify:
 * - {verify}: everything from the public key, about 3.0 million gas.
 * - {precompute} once per key (a 6,144-byte table of multiples of Q, about 2.4 million gas), then
 *   {verifyPrecomputed} for every signature under that key, about 1.24 million gas. A registry that
 *   caches a VCEK/VLEK once and checks many reports against it should store the table (e.g. as the
 *   code of a data contract) next to the key.
 *
 * Verdicts: both return false for an invalid signature, including r or s outside [1, n - 1]; they
 * revert with {P384InvalidLength} when an input is not 48 bytes and with {P384InvalidPublicKey} when
 * the public key is not a point of the curve (coordinates >= p, off the curve; the point at infinity
 * has no affine coordinates and is off the curve). {verifyPrecomputed} reverts with
 * {P384InvalidTable} when the table has the wrong length.
 *
 * IMPORTANT: {verifyPrecomputed} trusts its table: it must be the unmodified output of {precompute}
 * for the key the caller means (kept where only the caller can write it). A table for another key
 * verifies that key's signatures.
 *
 * NOTE: uses the CLZ opcode (EIP-7939) and MCOPY (EIP-5656): Osaka or later.
 *
 * Design (see docs/p384.md for the measurements):
 * - Field elements mod p = 2^384 - 2^128 - 2^96 + 2^32 - 1 are two words (hi < 2^128, lo), kept
 *   below 2^384 but not necessarily below p. A product is three words computed with `mul` and
 *   `mulmod(a, b, 2^256 - 1)` (a 512-bit product from its residues mod 2^256 and 2^256 - 1), then
 *   reduced with the Solinas form of p: 2^512 = 2^256 + 2^224 - 2^160 + 2^128 and
 *   2^384 = 2^128 + 2^96 - 2^32 + 1 (mod p), without branches.
 * - Points are Jacobian (X, Y, Z) ~ (X/Z^2, Y/Z^3); doubling is dbl-2001-b for a = -3 returned as
 *   (X3/4, Y3/8, Z3/2) (4M + 4S, no multiplications by 2, 4, 8),
 *   addition of an affine table point is madd-2004-hmv (8M + 3S) with the equal/opposite/infinity
 *   cases handled.
 * - u1 G + u2 Q with interleaved width-5 NAFs (Straus-Shamir): G is split as G_j = 2^(48 j) G,
 *   j = 0..7, whose odd multiples 1..15 are constants here, so u1 costs no doublings of its own
 *   (digit i of the NAF of u1 multiplies 2^(48 j) G_j's entry at row i - 48 j).
 *   {verify} builds the odd multiples of Q (affine, one inversion) and runs 385 doublings;
 *   {precompute} does the same for every Q_j = 2^(48 j) Q, and {verifyPrecomputed} runs 48.
 * - The inversions (s^-1 mod n; the batch inversion of the table's Z coordinates in {verify} and
 *   {precompute}) and the two products mod n use the modexp precompile (0x05): about 36,800 gas
 *   per inversion under EIP-7883 and 627 per product.
 */
library P384 {
    /// @notice A 48-byte big-endian input (digest, r, s or a coordinate) had another length.
    /// @param length the length received
    error P384InvalidLength(uint256 length);

    /// @notice The public key is not a point of P-384: a coordinate is not below p, or (x, y) is off
    /// the curve (which includes the all-zero encoding of the point at infinity).
    error P384InvalidPublicKey();

    /// @notice A precomputed table is not {TABLE_LENGTH} bytes long.
    /// @param length the length received
    error P384InvalidTable(uint256 length);

    /// @notice Length of a {precompute} table: 8 sub-tables (Q_j = 2^(48 j) Q, j = 0..7) of the odd
    /// multiples 1 Q_j, 3 Q_j, ..., 15 Q_j, each point as x || y (48-byte big-endian each).
    uint256 internal constant TABLE_LENGTH = 6144;

    /// @notice The same layout for G: G_TABLES[768 j + 96 i ...] = (2 i + 1) 2^(48 j) G.
    bytes internal constant G_TABLES =
        hex"aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab73617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f"
        hex"077a41d4606ffa1464793c7e5fdc7d98cb9d3910202dcd06bea4f240d3566da6b408bbae5026580d02d7e5c70500c831c995f7ca0b0c42837d0bbe9602a9fc998520b41c85115aa5f7684c0edc111eacc24abd6be4b5d298b65f28600a2f1df1"
        hex"11de24a2c251c777573cac5ea025e467f208e51dbff98fc54f6661cbe56583b037882f4a1ca297e60abcdbc3836d84bc8fa696c77440f92d0f5837e90a00e7c5284b447754d5dee88c986533b6901aeb3177686d0ae8fb33184414abe6c1713a"
        hex"283c1d7365ce4788f29f8ebf234edffead6fe997fbea5ffa2d58cc9dfa7b1c508b05526f55b9ebb2040f05b48fb6d0e19475c99061e41b88ba52efdb8c1690471a61d867ed799729d9c92cd01dbd225630d84ede32a78f9e64664cdac512ef8c"
        hex"8f0a39a4049bcb3ef1bf29b8b025b78f2216f7291e6fd3bac6cb1ee285fb6e21c388528bfee2b9535c55e4461079118b62c77e1438b601d6452c4a5322c3a9799a9b3d7ca3c400c6b7678854aed9b3029e743efedfd51b68262da4f9ac664af8"
        hex"099056e27da7b998da1eeec2904816c57fe935ed5837c37456c9fd14892d3f8c4749b66e3afb81d626356f3b55b4ddd82e4c0c234e30ab96688505544ac5e0396fc4eed8dfc363fd43ff93f41b52a3255466d51263aaff357d5dba8138c5e0bb"
        hex"a567ba97b67aea5bafdaf5002ffcc6ab9632bff9f01f873f6267bcd1f0f11c139ee5f441abd99f1baaf1ca1e3b5cbce7de1b38b3989f3318644e4147af164ecc5185595046932ec086329be057857d66776bcb8272218a7d6423a12736f429cc"
        hex"b3d13fc8b32b01058cc15c11d813525522a94156fff01c205b21f9f7da7c4e9ca849557a10b6383b4b88701a9606860b152919e7df9162a61b049b2536164b1beebac4a11d749af484d1114373dfbfd9838d24f8b284af50985d588d33f7bd62"
        hex"f19c3f9b433eb6a3804100caa7f6297ecbd8aa258512e48ab6971da1cc7fdedf3917d3a0900807059112e340f47168acae61a171f610090c4a1e9b515d38904565d24d485a620149af40b68bee4928be1b7078cb39d2cf6c45e0b1762d8b523f"
        hex"bf9368b925fae31cf2448b127d32cf1b3689c3d1e3b256a2542d3323db939ccaca6bc2cbe55c977d0f3e5c4bf4b400ed4a189df6555cb586bb2c01775abc0eb0028c85b9d6c16ad06afc3aee5528ddce1233cf5bbed3e60a6b122aa0abf2364f"
        hex"ea2df0a94afd9e5acd2b14fbee807afa76d384b1c9ead7c0529d1ac9c9f90773cf17f6c68dc45beb39ecbe963960af31803ab56f5a8e9b939e7d6b8928f1932e20ea3211444eaa61ebbf2f585090ea6de47b0034fea706f3c6e8d771458beed4"
        hex"0c7bbc44ee291c28c061d5661f1936d82a0e4a5d271e947244c0d818b18e6d24b3c6f5dba74f058f2f0a8ecfff28f921a3cefe096d30e0c0a2f87b23dcba1b55b6df04e22be18c6e8e942912f5d2952a923760f3f4eb442a270a1a416a3faced"
        hex"e3bd4620ef0f6be64f6f80e48794f92ea3d22984648ce7338b4c8339b82a2970120b2bd7a7fd875c7961575bbbeac961ee1ec3fc6a6f1f92feb7d2b4b946a3a05ed99a660af4d7e5c2ad537bf75ba3582b36871ecef03a506e07cec59e348b14"
        hex"f99d67414b0dc7a9921013d4956a5d8a20f8185cde7ac461c78b59379e4966553dd5d457ac531057e9da84f3f5c9bb9b931e142fd52b4f648fe8128052d58251e55504e6512ea7772a2ef8991d175eaab3e32d48702d6e107937c8cb1bf4d6a9"
        hex"5f0bf8af7371bec4936453e312a250ff887b9f309289dbf9ac39f5e7225f48e31251688344d473c204185909bba422d55067fb37f88e180e45c3de323dd7b5e5bc763b32ebdd52ec23d3b4a5bf4b7ff153ce50eef620bef2bbb11b179a135af8"
        hex"c1d4a8fe06fc6fe1744d6156f7b67b48713ad735e24804da745022bc497a241c7643494f87dc6495ea0546bf702337fb1d67ea906ef27014da53272286511c15bde7edf134237b66a099dba9af6fcbc5fb21a9e05fb7e58e9e6f01a9e976120f"
        hex"f532389a060cbd1bd6e98b0d37ca7abc4360390918141b1a4b58808b3f8686a92c3e0c91558717db39c1b328d8ee21c9b9d2852cc3b38e696f04caa2de3a82babd22cfb2a2124163bc40ce5abe64360331ea31b1085a4e9a7a7e183923d86ecd"
        hex"0418585a723ee7d764b3f91021d69d606e1a959e6b7bdefe8a91cb7cb5b8f7c2cc703c487f58dd3a7ccea65f9fbf5de5f190be7e57543114741b85ff12ddb1024e83ce078a0f010c56ad8f91e4bd2494aa90698a0d83371c6a7e5c7c5b797de2"
        hex"1a770f8f129fd4665b9467e66292f5a9f60b9d3b1338db1e629ed4e73084bc48d18151ffe2208a39925cbf46b820cc41daabebf43cc4c2357993c5fd468318af4efef311286a9c70ab88d4875dbc3fd7a0ab0a861ea8c1339861f6017845743c"
        hex"c1e6e5e4fafebc0476962f417dd7366b93f0298eb4e18052a3c6dbaea15207d55aa2b359e02c66779a5b763bcad68884f89cf775716aa814eeceec43981400f35f70404b287efc3545e38fe0f8d84364c29ff9a8c58f3797adaf35a2b7cf818c"
        hex"3a4efdea733bb4344dd104e88b4ee9701263dc6e16361f04c1057efa78d58b7e5d36c4451df5d737e3035e8bb73046bd7b380b0c906e8df1744013ffeec7fdb79744cf5ecdb043a9814bc4b707e01ec5f9f8363b61f44c47e196405e771ccad7"
        hex"e3d3b27d0d8690be32389c110af8a3de3ef248fec1feab425bc04a032beeb8c654e727e856e552992530775618a2ae9119cb80b00c8c4aafcf84aa5dbb3e880f403879dab5a0fe7a94e65eb71297a5aa2b9802ea3beef187757dc8e9ec6b2aab"
        hex"df181e550b10e502fbb78089d82faac61c05f2c33065dc57442690869f0429fbdcff73bd59a78c6ce3e631f2a0e7d1eb476fd1648f533d5a72e757608cd734a3bc741abe7a6026d59c954a5fe792b218f4eda4c30187561ea1922ca7ff3ad464"
        hex"ec5178a186bd702ac17bc40d1b7ea9fdc6749ddc6f0db54b7f2fef396c065fdd790cf3d3e04187654157898036e489313afac506992051b26c83ee80cba1ea69281a7d2491b32ee96e252d7261f65d049239f5d181deca0d22895800e6276d0d"
        hex"4e5a9dfe6ac2c3ef049f9294aaf0c000d214b583badc49fb712e1253ee0d124b89bba01d262810506f5e0f5d2805e596526f1b07f6acf1717bdd7fa6306b571281a2b6587a5e5a25b5a0603d0051e0574b8f321bced6e714965622c691013e25"
        hex"d39a39b13c5aa103f01289847d6c4eb8a07e761e035524861695676d2226ccdcf30983f32570b6be13092201ae948731d73f96b7bd8775bc5b9a533103671a216bb8b902c7d9918cad856519fb19cc06de6c0e326c6124d584286c0657da5c7a"
        hex"463eb450181f57a6990c855172668e0367f4e43938287c10919de6f94ae2ee504e24749c8351d281c9179a6a373703f58d6a583ae9d240868591518f3c7c293931f2982352fd0fd22f4c4a4030206e8f6a4df41c701382bfc7114244601ef99c"
        hex"7510bc90f63066830a092effed99dabfe86766cffc0450877a319d45bfc3586e1abfec315a962d2406e4c121a9f924f27a9b375e10bd862a50bc30fcf51881a7db0c21cdde1bd5e09a4c2bc761a6ab80792380f741a9877a3ec97dcefd4c2c1f"
        hex"5806cc28535238783e6a79987c947d9e8fe8260e0979a8293ba2e9fa4412d3723e0715a0deca67140a7351f5c6cd8bac639e6c230e7c381bde7f173aab1457fc0cd405d5fd954e5a95312fd1a48f137f1ecd609525c7607fb12e478df2ee2036"
        hex"cc3d6b63b38257bd24f1b980428d3691881db1fced8e40377d6a4034d3fb2bb5317e975218153a8a3df75c83eae1bc968a3de7ccf450f88f0c0ec4d3188771c8421e79fc16df99952e70f310e90e1de28c82813ccd1a86187e7d2dfa49fd6d4b"
        hex"36b74e37cd6a93caafa267c6a8919f64602ef0b8d9612510ddbb71fd7a7c5f953a68b954239ec185152875291461c7dcd70dd8d2ab382ffff0724f3c6dd0a91c863c9f322aea0987764033b9dafd2c34e60832f164beb33d410977b1f1ba47a2"
        hex"d710f8d06d567a069bfbcb026a7811b8c4550eee1e4734e2b59426b4719848a8ec6b5f3b4ed5823092c29c40bd28d60b7c157bf3d2e4fc93140ef4175574621c82cb0bbad0eb2139923c92f57f2b2fb095d654853b4f2c9b2e08631749eebe60"
        hex"c19e0b4c800119c440f7f9e706421279b42a31af8a3e297ddb2987894d10ddeaba065458a4f52d78a628b09aaa03bd5316f3fdbf0356b301e5a0191d1f5b77f6577a30eae3567af9c1c7cad135f6ebf2af68aa6de639d858822d0fc5e6c88c41"
        hex"1a509ee26fabc337f820ca874cdf382a623be1091e0922c4412788de72320efe88525311345523a8c6d13d9055de60e29a8d3d400bcca1dcb9484b480e0efa1caf3d0a9e581798b747cfb5b11f77605fadded6ea7c7fa6fb2123b6403da53b9d"
        hex"4a8217c8e8cc4419738eb43dd2f845cc5ec8010e2c6a277499a04bbf5d54eef2b2ec62213b5e93cbc5405556f13d61f791306dbdcbc986256c9fc6a53eda619d7a68a8ed13267b0493a8ffa5aa6ee304e2a5656ca3a04352365707829026fbd5"
        hex"ddde438ae7fe418c5fd943bdd58e4b2d0d57f75a8775011000098538b5829b862f7c46cd22f78e204eb8364d4f3bf0bb87ce6a49d7917ea90efe506d140f34f1734ed3a684d64d337088c49da6f2dacdcf32925b999add1feee61463e6173c57"
        hex"d4ac6ca5588b5558c94be86415ef4658d9a47617893a764b7341f958af1b2721773174ade385be745834d4f7db6c1be099324d723d21f15ad9af8db89ff512698605b3039ebfcca764150312f4d875035649d764e40dd43da68932ed604e818e"
        hex"3d19f7b68598ea1c283c8171ab5f0adfb20d327ab44da1d64e78c9326d4775c74646c2572e6ad902d10ca702a86b8e143b584e20861bf7acf66c491b525a584b3bca0e58cedad4786c32eef25e1dba663498e52a4087d5aec6278782a55e2f41"
        hex"0721e722e78b42300c0c95778fb3a10ad3be245cf876e128ef46906881ee09aeb905c03e035e69ab5426c15584bf0f5ab43425d7792071bcd37ccb7b6f07dc618f6958667324af4057263b126fdbcaa14e0df12a2adb450e89029149d9f6804a"
        hex"57aa537d68956272256c2ece57e772e9f78c1e3b322dbc5504206e68132d5b6274bbf4ae28be38f9a6efa42d1912f701fd99d661ed42e9826ebc3f9e0c6be476978c9578e72880c783b1d3b1358784c986b1e009aadd2baa6958fd4e026e09d0"
        hex"c6b405288edffa7fdbc082aba71bfebcf03811a5455c1c820f54907fa76f70c9464a92d055db2392b3de52c7a213e83b5c88fb72c6c4eafbb78ca0ff03519fa164acc0d1640707c9888e190753eec12112b29e9a4c00333ac07bb07de3636016"
        hex"701d14f863902d8d8451baa5fee3fd004a6820feb1bbdcc6c7a859b7067d6b1c436aabebb37c91fabdd4b2038bf77bb6cb7b67b559b549d24600c6c21c6c642969bb3a8b0ed785cb55b2baf154119890c1441e920670431cf47c0f3bc68211fd"
        hex"d3fb154965ff710ddade55aeedf1dd9461eec524cfe79e95b8d037ed4dd52a912b83506b3c4d95bb1a3d31d679d31448768ae80c5a0d259915b0132fb84f6477fef4ffe3ea792a9500f1daf9d8921a1b4b00cc3a0506bff478701e420f26d7b2"
        hex"7e31368290f31a6784149035b15d2945515cfcfe8f9298496325b6c498ffaba52cd9ecbe4e98e6af20527222e898cbccef81bc42db2481918b4d6bc6c284875ca48c501fd4b854634ed79afa842dd57399a0bb57d0d5a059148c8386713398bb"
        hex"97b0175fcbc8b0b8008cf2c24618b9deb0f2735734e738cd54774f9a017a78b3eeb4781133fd82750f8ccb8c02beec1596b15a2615b223f32816e1512dd9f0b93bff97b805b91be8866e7322922ad7345d3b1f03b7b32eac8bbeb8faea989a65"
        hex"c441be752438b790763d4fbb35d925e615895e313478a8ed878ddde3d49844a9ddd33e697e6610605aacaf3ba9ebd96542c294de3f391bd16e1baa825ea8bd9558b3595882966305ac79e6321aab6ffb03e7c6f1bcef63dbd8141ca0a03c20cb"
        hex"9c49d432ecbc886e7a42f5c426b16ba41f5b7bacb7110f8864ed6cd133add13f248e3c50675f5c14994cbb202d0f89d0dbae4f2a5666a4534fa0053dbfe74c3e54fb1dbb8ec78f656af7f10b14a1f7435ab90db2a7cd9570a389fac08142cdd2"
        hex"06fbc73a3a78311ec06dca7ab189df3787765cee6b1268cacf9db9909fdd9dfb8ebdd1276f815dcab4878504f5538bd2d8a3bcbdde9ae50743f454d3153b21e179f99441299e2629352d8ba49991830416a9a1a287e2a7c7e15508e671cfba00"
        hex"b2d1055817cbaa12211905035f4972d7097da395a23096863d8b29dbd08848c2f33a450ad156f761e4bfc2c04905ca71354cd872c3c6cbd2237c0dba3cfd056bf82be8f52e6236c09b475d744ecf1a68e87ab07c6924666fddcebb55753ee324"
        hex"8472b9637604fae7e0182345b2d31bf7616051990850907d546404d46de55f63b19a9fbb285863969695f73575e58cef251467f2c874129442a0b0d6cbb0f7b70fa7cfd617e9d6ccd631e4e97add939f45fb72b75299efe192c2138749b28e0d"
        hex"a94cb07b417acc6efcad1de573b122e4990bec9131753e2ff5d115bc2320c788007da251424f5265f3cbed25c2dd943aa76546d4bbf4dcb3db109846397562beedb60b9b08be72803ca7a5717969fb8840fa5182878078db2223f73ab9516d33"
        hex"186d6834241ab8990fde8f0660e6eb6d24d587bc7625eaf9c2c94d2df7a9cdbea8f5a88bc6b8da27f772079d7a92e0550a9fba17106c9a0bff88fde20e9d18061d6dccbb347ef924fa81c6ae65151eb4f033a2b4efcea4812293e645ae4c265e"
        hex"4d19c787f303289549ed5a2d289d3a4f7b9a656ef246a586ffe0eb17b46f837d16d6f9144b7ed1e2bfc7abb7b38615426211c6a9781496ce6eb37cc388abc5863835eaffea2b7840538c49bbd3bf86521b30784fb609c245719dd3daab66bccc"
        hex"529ff0dae8c3b11103f1310f1c5ac1dc6a75bf6fe51d885512fff68f36479d0b627608bdc70f9e783df7bb21a4833e4fb8cf21e81c3368aed3454a0197d3bb0d5b6b16eef7e99005e42c6d006cbfd1623a5f3041639168fb293ca7a2559c8274"
        hex"f09eba03bffe562379b53d41796aa45e05fa1f25e3f8f6bd90f218d0ad840206ffc8c0bd88ef060f9684c93050295856fb144a63acf26debacfc3e6417e75674e3a43baac3c0b6bd96562bcac831e4f2386af0363c837fa0a99b769b661e6664"
        hex"eb1833c955e8ab1e100c17c6fb0baff00ec6779b81dc4e605fcdca2f8f5e4ef6f799f9034694df91c9bbbca8f470af50b75b527d4468de4f48bf00e6324ffba5840e2c3c6d523f6869a38e7c8658bbd57c8f1779865e9128b2e79219e73796d0"
        hex"f23c10b4637ee9430231423bc46da385aee309abd12c0f3a8a1646fe51a3599f6e668ac4932b516d35b2e4383f385d2bc425de168de7ac781e8c72ad267bb3fdee94bf701f2d8179af084771daad7d1d9ed447e3d45f6553c0bc215d22248e00"
        hex"92ba26a4d1335fbe4cac2455242a6fe4a3b2bd18684c6514ec5d8b89adcedda53c16c20eed232d4a42a4d006d20b2e506882255959b0725bdc239d81bc6268ffec9b221971a55c70acb2dee8b5bfb62763dc6efa890424019061f71617100b52"
        hex"bf4af30bd1f0a3e69a5d936633c056b1656aa87dc37cb95bd23fba2d4de1df0c89638528a789df53da52e57f00ad744d6ceb6b5509d2eef3de88dbd7d3745d7f2d07dbc728293c5367b886af29469ab47ed2ff2568eb0b656ab012fef98152da"
        hex"5c8a0ab598eb8f0780d32ce6458c1a60c0983027ea00fae147e73c8a162352fd4f3a0f55f9b84c603ea12cfebd0a33bf2047d9a33c8f067360f441db5432ec9233fdca2892664d7e81d8e136a35059f1e8cc6419c22fbbd7abbcb2b143e90d42"
        hex"fee97f8d093088dbc4a715f1ef6f6f269efcac9394d56c433c37feb80633b54f95ed6c89eaf2f4377a71d521c5eeb7e9f99922c2f70be98d7ca1d13976709c8491f9e864c9a60db7f4135d37eb79db5fc2341d631562db643c598ca2edb4ca5f"
        hex"7630684b31d58a0a3d2ccd21c0fcaee6627f82d16c44b94c711e42c852ed49f17731f0d574090d9815227568db988583b63de39a79de709a4b84b935101330257f3ca2ec85d6e232c2104507d9efef3f27359faaeef0646304983ecae32c0caf"
        hex"2fd6078ab0e5f1e402f6d306af0682bea38de3c365bfd8d70800c45ba6c0df4f3bcfd80ca55a60cfc71ca2af5a30424a6e9a4981545c49b0886ed619b9cb8ed1ffeb709c6d2c6878984622b2c3051d473fa62af0057ba8273292cbe997448486"
        hex"32ae00254723a4ada16e034baddf35a2ccc29ead30a574f076120dc2508100acfdefb51a313900efd01606a730e8a72b5dd313e31c42f1cdd2ab212652fa7fa187b2f57d8706a1b8c46295446e50b7ce00cca40011b06e042a9958671e1ca3db";

    uint256 private constant OP_VERIFY = 0;
    uint256 private constant OP_PRECOMPUTE = 1;
    uint256 private constant OP_VERIFY_PRECOMPUTED = 2;

    /**
     * @notice True iff (r, s) is a valid ECDSA signature of the SHA-384 `digest` under the public key
     * (qx, qy) (SEC 1 v2 section 4.1.4). All five inputs are 48-byte big-endian.
     * @dev Reverts with {P384InvalidLength} or {P384InvalidPublicKey} on malformed inputs; an invalid
     * signature (r or s outside [1, n - 1] included) returns false.
     */
    function verify(bytes memory digest, bytes memory r, bytes memory s, bytes memory qx, bytes memory qy)
        internal
        view
        returns (bool)
    {
        uint256[11] memory w;
        (w[0], w[1]) = _load48(digest);
        (w[2], w[3]) = _load48(r);
        (w[4], w[5]) = _load48(s);
        (w[6], w[7]) = _load48(qx);
        (w[8], w[9]) = _load48(qy);
        w[10] = OP_VERIFY;
        return _core(w, "");
    }

    /**
     * @notice The {TABLE_LENGTH}-byte table of the public key (qx, qy) for {verifyPrecomputed}.
     * @dev Reverts with {P384InvalidLength} or {P384InvalidPublicKey} when (qx, qy) is not a P-384 point.
     */
    function precompute(bytes memory qx, bytes memory qy) internal view returns (bytes memory table) {
        uint256[11] memory w;
        (w[6], w[7]) = _load48(qx);
        (w[8], w[9]) = _load48(qy);
        table = new bytes(TABLE_LENGTH);
        w[10] = OP_PRECOMPUTE;
        _core(w, table);
    }

    /**
     * @notice True iff (r, s) is a valid ECDSA signature of the SHA-384 `digest` under the key whose
     * {precompute} table is `table`. `digest`, `r` and `s` are 48-byte big-endian.
     * @dev Reverts with {P384InvalidLength} or {P384InvalidTable} on malformed inputs.
     * IMPORTANT: `table` must come unmodified from {precompute} for the intended key.
     */
    function verifyPrecomputed(bytes memory digest, bytes memory r, bytes memory s, bytes memory table)
        internal
        view
        returns (bool)
    {
        if (table.length != TABLE_LENGTH) revert P384InvalidTable(table.length);
        uint256[11] memory w;
        (w[0], w[1]) = _load48(digest);
        (w[2], w[3]) = _load48(r);
        (w[4], w[5]) = _load48(s);
        w[10] = OP_VERIFY_PRECOMPUTED;
        return _core(w, table);
    }

    /// @dev A 48-byte big-endian value as (its top 16 bytes, its low 32 bytes).
    function _load48(bytes memory b) private pure returns (uint256 hi, uint256 lo) {
        if (b.length != 48) revert P384InvalidLength(b.length);
        assembly ("memory-safe") {
            hi := shr(128, mload(add(b, 0x20)))
            lo := mload(add(b, 0x30))
        }
    }

    /**
     * @dev The three operations on one set of Yul functions. `w` holds 48-byte values as (hi, lo)
     * word pairs: digest e (w[0], w[1]), r (w[2], w[3]), s (w[4], w[5]), qx (w[6], w[7]), qy (w[8], w[9]).
     * OP_VERIFY: checks the key, builds its odd-multiples table and verifies; OP_PRECOMPUTE: checks the
     * key and fills `table`; OP_VERIFY_PRECOMPUTED: verifies with `table`.
     * Memory: scratch beyond the free memory pointer, which is not moved: about 17 KiB in
     * OP_PRECOMPUTE, 10 KiB in OP_VERIFY, 1 KiB in OP_VERIFY_PRECOMPUTED.
     */
    function _core(uint256[11] memory w, bytes memory table) private view returns (bool ok) {
        // the operation travels in memory, not as an argument: the optimizer would otherwise copy this
        // function once per operation (with the 6 KiB of G tables in each copy)
        uint256 op = w[10];
        bytes memory gTables;
        if (op != OP_PRECOMPUTE) gTables = G_TABLES;
        bool badKey;
        assembly ("memory-safe") {
            // ====================================================================== field mod p
            // Elements are (h, l) = h 2^256 + l with h < 2^128, any value below 2^384 (not always
            // below p). Every function below returns that form.

            // a b mod p. The 768-bit product T = w2 2^512 + w1 2^256 + z0 is built from 512-bit partial
            // products: v < 2^512 is fixed by lo = v mod 2^256 (mul, add) and v mod (2^256 - 1) (mulmod,
            // addmod); its high word is (v mod (2^256 - 1) - lo) mod (2^256 - 1), and
            // -lo = not(lo) mod 2^256 - 1. a0 b0 gives (w1, z0), a1 b0 + a0 b1 < 2^385 gives (w2, xl),
            // a1 b1 < 2^256 adds to w2; xl joins w1 with its carry.
            // Then T = w2 2^512 + w1 2^256 + z0 < 2^768 is reduced with the Solinas form of p:
            // - 2^512 = 2^256 + f (mod p), f = 2^224 - 2^160 + 2^128: T = (w1 + w2) 2^256 + z0 + w2 f, where
            //   w2 f = g1 2^256 + g0 (g1 < 2^224); the sums leave k 2^512 + w1 2^256 + z0 with k <= 2.
            // - From bit 384 up that is H = k 2^128 + (w1 >> 128) < 2^130, and 2^384 = c (mod p),
            //   c = 2^128 + d, d = 2^96 - 2^32 + 1: H c = H 2^128 + H d, where H 2^128 is k 2^256 plus w1
            //   with its low 128 bits cleared. The high word becomes (w1 mod 2^128) + k + carries,
            //   at most 2^128 + 3.
            // - A last fold adds c for bit 384 (the high word is then at most 4).
            function fmul(a1, a0, b1, b0) -> r1, r0 {
                let xl := add(mul(a1, b0), mul(a0, b1))
                let w2 := add(addmod(addmod(mulmod(a1, b0, not(0)), mulmod(a0, b1, not(0)), not(0)), not(xl), not(0)),
                    mul(a1, b1))
                let z0 := mul(a0, b0)
                let w1 := add(addmod(mulmod(a0, b0, not(0)), not(z0), not(0)), xl)
                w2 := add(w2, lt(w1, xl))
                let g0 := mul(w2, 0xffffffffffffffff0000000100000000000000000000000000000000)
                let g1 := addmod(mulmod(w2, 0xffffffffffffffff0000000100000000000000000000000000000000, not(0)),
                    not(g0), not(0))
                z0 := add(z0, g0)
                g1 := add(g1, lt(z0, g0))
                w1 := add(w1, w2)
                let k := lt(w1, w2)
                w1 := add(w1, g1)
                k := add(k, lt(w1, g1))
                let h := mul(or(shl(128, k), shr(128, w1)), 0xffffffffffffffff00000001)
                g0 := and(w1, not(0xffffffffffffffffffffffffffffffff))
                z0 := add(z0, g0)
                k := add(k, lt(z0, g0))
                z0 := add(z0, h)
                w1 := add(and(w1, 0xffffffffffffffffffffffffffffffff), add(k, lt(z0, h)))
                h := mul(shr(128, w1), 0x100000000ffffffffffffffff00000001)
                r0 := add(z0, h)
                r1 := add(and(w1, 0xffffffffffffffffffffffffffffffff), lt(r0, h))
            }
            // a^2 mod p: the cross term 2 a1 a0 as one product (2 a1) a0 < 2^385, then the reduction of
            // fmul. The reduction is written out in both: a shared function costs a jump and argument
            // shuffling per call, 5 % of a verification.
            function fsqr(a1, a0) -> r1, r0 {
                let t := shl(1, a1)
                let xl := mul(t, a0)
                let w2 := add(addmod(mulmod(t, a0, not(0)), not(xl), not(0)), mul(a1, a1))
                let z0 := mul(a0, a0)
                let w1 := add(addmod(mulmod(a0, a0, not(0)), not(z0), not(0)), xl)
                w2 := add(w2, lt(w1, xl))
                let g0 := mul(w2, 0xffffffffffffffff0000000100000000000000000000000000000000)
                let g1 := addmod(mulmod(w2, 0xffffffffffffffff0000000100000000000000000000000000000000, not(0)),
                    not(g0), not(0))
                z0 := add(z0, g0)
                g1 := add(g1, lt(z0, g0))
                w1 := add(w1, w2)
                let k := lt(w1, w2)
                w1 := add(w1, g1)
                k := add(k, lt(w1, g1))
                let h := mul(or(shl(128, k), shr(128, w1)), 0xffffffffffffffff00000001)
                g0 := and(w1, not(0xffffffffffffffffffffffffffffffff))
                z0 := add(z0, g0)
                k := add(k, lt(z0, g0))
                z0 := add(z0, h)
                w1 := add(and(w1, 0xffffffffffffffffffffffffffffffff), add(k, lt(z0, h)))
                h := mul(shr(128, w1), 0x100000000ffffffffffffffff00000001)
                r0 := add(z0, h)
                r1 := add(and(w1, 0xffffffffffffffffffffffffffffffff), lt(r0, h))
            }
            // h 2^256 + l with h < 2^132 to the element form: bits from 384 up times c into l, twice
            function fold(h, l) -> r1, r0 {
                let t := mul(shr(128, h), 0x100000000ffffffffffffffff00000001)
                r0 := add(l, t)
                r1 := add(and(h, 0xffffffffffffffffffffffffffffffff), lt(r0, t))
                r0 := add(r0, mul(shr(128, r1), 0x100000000ffffffffffffffff00000001))
                r1 := and(r1, 0xffffffffffffffffffffffffffffffff)
            }
            function fadd(a1, a0, b1, b0) -> r1, r0 {
                r0 := add(a0, b0)
                r1, r0 := fold(add(add(a1, b1), lt(r0, b0)), r0)
            }
            // 2^k a for k in 1..3
            function fshl(a1, a0, k) -> r1, r0 {
                r1, r0 := fold(or(shl(k, a1), shr(sub(256, k), a0)), shl(k, a0))
            }
            // a - b: a negative difference d (> -2^384) becomes d + 2^384 - c = d + p; if that is still
            // negative (only when b >= p), add p once more
            function fsub(a1, a0, b1, b0) -> r1, r0 {
                r0 := sub(a0, b0)
                r1 := sub(sub(a1, b1), lt(a0, b0))
                let neg := shr(255, r1)
                r1 := and(r1, 0xffffffffffffffffffffffffffffffff)
                let t := mul(neg, 0x100000000ffffffffffffffff00000001)
                r1 := sub(r1, lt(r0, t))
                r0 := sub(r0, t)
                neg := shr(255, r1)
                r1 := and(r1, 0xffffffffffffffffffffffffffffffff)
                r0 := sub(r0, mul(neg, 0x100000000ffffffffffffffff00000001))
            }
            // a = 0 (mod p): below 2^384 that is 0 or p
            function fzero(a1, a0) -> z {
                z := or(iszero(or(a1, a0)), and(eq(a1, 0xffffffffffffffffffffffffffffffff),
                    eq(a0, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)))
            }
            // the representative in [0, p)
            function fcanon(a1, a0) -> r1, r0 {
                r1 := a1
                r0 := a0
                if and(eq(a1, 0xffffffffffffffffffffffffffffffff),
                    iszero(lt(a0, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff))) {
                    r1 := 0
                    r0 := sub(a0, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)
                }
            }
            function lt384(a1, a0, b1, b0) -> c {
                c := or(lt(a1, b1), and(eq(a1, b1), lt(a0, b0)))
            }
            // ====================================================================== points
            // 3 a / 2 = a + a / 2, with a / 2 = (a + p) / 2 when a is odd (a + p < 2^385, so a / 2 is
            // below 2^384)
            function f3half(a1, a0) -> r1, r0 {
                let odd := and(a0, 1)
                r0 := add(a0, mul(odd, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff))
                r1 := add(add(a1, mul(odd, 0xffffffffffffffffffffffffffffffff)), lt(r0, a0))
                r0 := or(shr(1, r0), shl(255, r1))
                r0 := add(r0, a0)
                r1, r0 := fold(add(add(shr(1, r1), a1), lt(r0, a0)), r0)
            }
            // 2 (X, Y, Z), Jacobian, a = -3: dbl-2001-b (delta = Z^2, gamma = Y^2, beta = X gamma,
            // alpha = 3 (X - delta)(X + delta), X3 = alpha^2 - 8 beta, Y3 = alpha (4 beta - X3) - 8 gamma^2,
            // Z3 = 2 Y Z) returned as the equal Jacobian point (X3 / 4, Y3 / 8, Z3 / 2), which needs
            // no multiplications by 2, 4 or 8: with A = alpha / 2, X3 / 4 = A^2 - 2 beta,
            // Y3 / 8 = A (beta - X3 / 4) - gamma^2, Z3 / 2 = Y Z. Z = 0 (infinity) stays Z3 = 0.
            function pdbl(x1, x0, y1, y0, z1, z0) -> X1, X0, Y1, Y0, Z1, Z0 {
                let d1, d0 := fsqr(z1, z0)
                Z1, Z0 := fmul(y1, y0, z1, z0)
                let t1, t0 := fsub(x1, x0, d1, d0)
                d1, d0 := fadd(x1, x0, d1, d0)
                let a1, a0 := fmul(t1, t0, d1, d0)
                a1, a0 := f3half(a1, a0)
                let g1, g0 := fsqr(y1, y0)
                let b1, b0 := fmul(x1, x0, g1, g0)
                g1, g0 := fsqr(g1, g0)
                t1, t0 := fshl(b1, b0, 1)
                X1, X0 := fsqr(a1, a0)
                X1, X0 := fsub(X1, X0, t1, t0)
                b1, b0 := fsub(b1, b0, X1, X0)
                Y1, Y0 := fmul(a1, a0, b1, b0)
                Y1, Y0 := fsub(Y1, Y0, g1, g0)
            }
            // (X, Y, Z) + (ax, ay), Jacobian plus affine (madd-2004-hmv): U2 = ax Z^2, S2 = ay Z^3,
            // H = U2 - X, R = S2 - Y, Z3 = Z H, X3 = R^2 - H^3 - 2 X H^2, Y3 = R (X H^2 - X3) - Y H^3.
            // Infinity plus A is A; H = 0 means the same x: 2A when R = 0, infinity otherwise.
            function padd(x1, x0, y1, y0, z1, z0, ax1, ax0, ay1, ay0) -> X1, X0, Y1, Y0, Z1, Z0 {
                if fzero(z1, z0) {
                    X1 := ax1
                    X0 := ax0
                    Y1 := ay1
                    Y0 := ay0
                    Z0 := 1
                    leave
                }
                let t1, t0 := fsqr(z1, z0)
                let u1, u0 := fmul(t1, t0, z1, z0)
                u1, u0 := fmul(ay1, ay0, u1, u0)
                u1, u0 := fsub(u1, u0, y1, y0)
                t1, t0 := fmul(t1, t0, ax1, ax0)
                t1, t0 := fsub(t1, t0, x1, x0)
                if fzero(t1, t0) {
                    if fzero(u1, u0) {
                        X1, X0, Y1, Y0, Z1, Z0 := pdbl(ax1, ax0, ay1, ay0, 0, 1)
                        leave
                    }
                    Y0 := 1
                    leave
                }
                let v1, v0 := fsqr(t1, t0)
                let w1, w0 := fmul(t1, t0, v1, v0)
                v1, v0 := fmul(x1, x0, v1, v0)
                Z1, Z0 := fmul(z1, z0, t1, t0)
                X1, X0 := fsqr(u1, u0)
                X1, X0 := fsub(X1, X0, w1, w0)
                w1, w0 := fmul(w1, w0, y1, y0)
                t1, t0 := fshl(v1, v0, 1)
                X1, X0 := fsub(X1, X0, t1, t0)
                v1, v0 := fsub(v1, v0, X1, X0)
                v1, v0 := fmul(v1, v0, u1, u0)
                Y1, Y0 := fsub(v1, v0, w1, w0)
            }
            // ====================================================================== tables
            // A table holds the odd multiples 1, 3, ..., 15 of one point, affine, canonical, packed
            // as x || y (48 + 48 bytes big-endian): 768 bytes.
            function pload(tab, d) -> ax1, ax0, ay1, ay0 {
                let neg := slt(d, 0)
                if neg { d := sub(0, d) }
                let ptr := add(tab, mul(shr(1, d), 96))
                ax1 := shr(128, mload(ptr))
                ax0 := mload(add(ptr, 16))
                ay1 := shr(128, mload(add(ptr, 48)))
                ay0 := mload(add(ptr, 64))
                if neg {
                    // p - y
                    let l := 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff
                    ay1 := sub(sub(0xffffffffffffffffffffffffffffffff, ay1), lt(l, ay0))
                    ay0 := sub(l, ay0)
                }
            }
            function pstore(ptr, x1, x0, y1, y0) {
                mstore(ptr, shl(128, x1))
                mstore(add(ptr, 16), x0)
                mstore(add(ptr, 48), shl(128, y1))
                mstore(add(ptr, 64), y0)
            }
            // Odd multiples of B = (bx, by, bz) as 8 Jacobian points (6 words each) at dst. With
            // 2B = (X2, Y2, Z2), the isomorphism (x, y) -> (x Z2^2, y Z2^3) onto y^2 = x^3 - 3 Z2^4 x
            // + b Z2^6 makes 2B the affine (X2, Y2): there B is (bx Z2^2, by Z2^3, bz) and each next
            // odd multiple is one mixed addition (which does not depend on the curve's a); a point
            // (X, Y, Z) there is (X, Y, Z Z2) here. The special cases of padd cannot occur:
            // k B = +-2B for odd k < 16 would need a multiple of B below 18 to vanish (n is prime).
            function oddMultiples(dst, bx1, bx0, by1, by0, bz1, bz0) {
                let X1, X0, Y1, Y0, Z1, Z0 := pdbl(bx1, bx0, by1, by0, bz1, bz0)
                let s1, s0 := fsqr(Z1, Z0)
                bx1, bx0 := fmul(bx1, bx0, s1, s0)
                s1, s0 := fmul(s1, s0, Z1, Z0)
                by1, by0 := fmul(by1, by0, s1, s0)
                for { let k := 0 } 1 { } {
                    let p := add(dst, mul(k, 0xc0))
                    mstore(p, bx1)
                    mstore(add(p, 0x20), bx0)
                    mstore(add(p, 0x40), by1)
                    mstore(add(p, 0x60), by0)
                    s1, s0 := fmul(bz1, bz0, Z1, Z0)
                    mstore(add(p, 0x80), s1)
                    mstore(add(p, 0xa0), s0)
                    k := add(k, 1)
                    if eq(k, 8) { break }
                    bx1, bx0, by1, by0, bz1, bz0 := padd(bx1, bx0, by1, by0, bz1, bz0, X1, X0, Y1, Y0)
                }
            }
            // cnt Jacobian points at src (6 words each, Z != 0) to packed affine points at out, with
            // one inversion (Montgomery's trick: prefix products of the Z, invert the last, walk back).
            // Scratch: 64 cnt bytes of prefix products after the points, then 240 bytes for modexp.
            function normalize(src, cnt, out) {
                let pre := add(src, mul(cnt, 0xc0))
                let c1 := 0
                let c0 := 1
                for { let k := 0 } lt(k, cnt) { k := add(k, 1) } {
                    let p := add(src, mul(k, 0xc0))
                    c1, c0 := fmul(c1, c0, mload(add(p, 0x80)), mload(add(p, 0xa0)))
                    mstore(add(pre, shl(6, k)), c1)
                    mstore(add(pre, add(shl(6, k), 0x20)), c0)
                }
                // (Z_0 ... Z_{cnt-1})^(p - 2)
                c1, c0 := powmod(add(pre, shl(6, cnt)), c1, c0, 0xffffffffffffffffffffffffffffffff,
                    0xfffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffd,
                    0xffffffffffffffffffffffffffffffff,
                    0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)
                for { let k := cnt } k { } {
                    k := sub(k, 1)
                    let p := add(src, mul(k, 0xc0))
                    // c = 1 / (Z_0 ... Z_k); 1 / Z_k = c Z_0 ... Z_{k-1}
                    let i1 := c1
                    let i0 := c0
                    if k {
                        let q := add(pre, shl(6, sub(k, 1)))
                        i1, i0 := fmul(c1, c0, mload(q), mload(add(q, 0x20)))
                        c1, c0 := fmul(c1, c0, mload(add(p, 0x80)), mload(add(p, 0xa0)))
                    }
                    let s1, s0 := fsqr(i1, i0)
                    let ax1, ax0 := fmul(mload(p), mload(add(p, 0x20)), s1, s0)
                    s1, s0 := fmul(s1, s0, i1, i0)
                    let ay1, ay0 := fmul(mload(add(p, 0x40)), mload(add(p, 0x60)), s1, s0)
                    ax1, ax0 := fcanon(ax1, ax0)
                    ay1, ay0 := fcanon(ay1, ay0)
                    pstore(add(out, mul(k, 96)), ax1, ax0, ay1, ay0)
                }
            }
            // Tables for Q_j = 2^(48 j) Q, j < count, at out; scratch at jac (count 14 KiB + 240 bytes).
            function buildTables(out, count, jac, x1, x0, y1, y0) {
                let z1 := 0
                let z0 := 1
                for { let j := 0 } lt(j, count) { j := add(j, 1) } {
                    if j {
                        for { let t := 0 } lt(t, 48) { t := add(t, 1) } {
                            x1, x0, y1, y0, z1, z0 := pdbl(x1, x0, y1, y0, z1, z0)
                        }
                    }
                    oddMultiples(add(jac, mul(j, 0x600)), x1, x0, y1, y0, z1, z0)
                }
                normalize(jac, shl(3, count), out)
            }
            // ====================================================================== scalars mod n
            // a^e mod m with the modexp precompile (EIP-198), 48-byte operands; scratch s (240 bytes)
            function powmod(s, a1, a0, e1, e0, m1, m0) -> r1, r0 {
                mstore(s, 48)
                mstore(add(s, 0x20), 48)
                mstore(add(s, 0x40), 48)
                mstore(add(s, 0x60), shl(128, a1))
                mstore(add(s, 0x70), a0)
                mstore(add(s, 0x90), shl(128, e1))
                mstore(add(s, 0xa0), e0)
                mstore(add(s, 0xc0), shl(128, m1))
                mstore(add(s, 0xd0), m0)
                if iszero(staticcall(gas(), 0x05, s, 0xf0, s, 0x30)) { revert(0, 0) }
                r1 := shr(128, mload(s))
                r0 := mload(add(s, 0x10))
            }
            // a b mod n: the 96-byte product to the power 1 mod n; scratch s (241 bytes)
            function mulmodn(s, a1, a0, b1, b0) -> r1, r0 {
                let z0 := mul(a0, b0)
                let w1 := mulmod(a0, b0, not(0))
                w1 := sub(sub(w1, z0), lt(w1, z0))
                let xl := add(mul(a1, b0), mul(a0, b1))
                let w2 := addmod(mulmod(a1, b0, not(0)), mulmod(a0, b1, not(0)), not(0))
                w2 := add(sub(sub(w2, xl), lt(w2, xl)), mul(a1, b1))
                w1 := add(w1, xl)
                w2 := add(w2, lt(w1, xl))
                mstore(s, 96)
                mstore(add(s, 0x20), 1)
                mstore(add(s, 0x40), 48)
                mstore(add(s, 0x60), w2)
                mstore(add(s, 0x80), w1)
                mstore(add(s, 0xa0), z0)
                mstore(add(s, 0xc0), shl(248, 1))
                mstore(add(s, 0xc1), shl(128, 0xffffffffffffffffffffffffffffffff))
                mstore(add(s, 0xd1), 0xffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973)
                if iszero(staticcall(gas(), 0x05, s, 0xf1, s, 0x30)) { revert(0, 0) }
                r1 := shr(128, mload(s))
                r0 := mload(add(s, 0x10))
            }
            // Width-5 NAF of k (Hankerson-Menezes-Vanstone, "Guide to ECC", algorithm 3.35): odd digits
            // |d| <= 15, at most one nonzero in any 5 consecutive, 385 digits at most for k < 2^384.
            // Digit i goes to the byte at naf + 16 i (two's complement), or with `chunked` to row
            // i - 48 j, byte j, of chunk j = min(i / 48, 7): the digit then multiplies 2^(48 j) P,
            // which G_j / Q_j already hold (digit 384 lands in row 48 of chunk 7). One NAF of the whole
            // scalar has fewer nonzero digits than eight NAFs of its 48-bit chunks. The bytes must be
            // zero already. Returns the number of rows used.
            function wnaf(naf, k1, k0, chunked) -> rows {
                let pos := 0
                for { } or(k1, k0) { } {
                    if iszero(k0) {
                        k0 := k1
                        k1 := 0
                        pos := add(pos, 256)
                        continue
                    }
                    // skip the trailing zeros: ctz(k0) = 255 - clz(k0 & -k0)
                    let tz := sub(255, clz(and(k0, sub(0, k0))))
                    k0 := or(shr(tz, k0), shl(sub(256, tz), k1))
                    k1 := shr(tz, k1)
                    pos := add(pos, tz)
                    let d := and(k0, 31)
                    switch lt(d, 16)
                    case 1 { k0 := sub(k0, d) }
                    default {
                        // d - 32 < 0: k + (32 - d)
                        let n0 := add(k0, sub(32, d))
                        k1 := add(k1, lt(n0, k0))
                        k0 := n0
                        d := sub(d, 32)
                    }
                    let row := pos
                    let chunk := 0
                    if chunked {
                        chunk := div(pos, 48)
                        if gt(chunk, 7) { chunk := 7 }
                        row := sub(pos, mul(chunk, 48))
                    }
                    mstore8(add(add(naf, shl(4, row)), chunk), and(d, 0xff))
                    if gt(add(row, 1), rows) { rows := add(row, 1) }
                    // k is a multiple of 32 now
                    k0 := or(shr(5, k0), shl(251, k1))
                    k1 := shr(5, k1)
                    pos := add(pos, 5)
                }
            }
            // ====================================================================== the operations
            let m := mload(0x40)
            // the public key: coordinates below p and y^2 = x^3 - 3 x + b
            if iszero(eq(op, 2)) {
                let x1 := mload(add(w, 0xc0))
                let x0 := mload(add(w, 0xe0))
                let y1 := mload(add(w, 0x100))
                let y0 := mload(add(w, 0x120))
                badKey := or(
                    iszero(lt384(x1, x0, 0xffffffffffffffffffffffffffffffff,
                        0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)),
                    iszero(lt384(y1, y0, 0xffffffffffffffffffffffffffffffff,
                        0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)))
                if iszero(badKey) {
                    let l1, l0 := fsqr(y1, y0)
                    let r1, r0 := fsqr(x1, x0)
                    r1, r0 := fsub(r1, r0, 0, 3)
                    r1, r0 := fmul(r1, r0, x1, x0)
                    r1, r0 := fadd(r1, r0, 0xb3312fa7e23ee7e4988e056be3f82d19,
                        0x181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef)
                    l1, l0 := fcanon(l1, l0)
                    r1, r0 := fcanon(r1, r0)
                    badKey := iszero(and(eq(l1, r1), eq(l0, r0)))
                }
                if and(eq(op, 1), iszero(badKey)) {
                    buildTables(add(table, 0x20), 8, m, x1, x0, y1, y0)
                    ok := 1
                }
            }
            let rh := mload(add(w, 0x40))
            let rl := mload(add(w, 0x60))
            let sh := mload(add(w, 0x80))
            let sl := mload(add(w, 0xa0))
            let N1 := 0xffffffffffffffffffffffffffffffff
            let N0 := 0xffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973
            // a signature needs 0 < r < n and 0 < s < n
            if and(iszero(or(eq(op, 1), badKey)),
                and(and(gt(or(rh, rl), 0), lt384(rh, rl, N1, N0)), and(gt(or(sh, sl), 0), lt384(sh, sl, N1, N0)))) {
                // Sub-tables: slot j < 8 is G_j at gTables, slot 8 + j is Q_j at qt.
                let gtab := add(gTables, 0x20)
                let qt := add(table, 0x20)
                let positions := 49
                let digits := m
                if iszero(op) {
                    // plain verification: Q's table in scratch, a full-length u2
                    qt := m
                    digits := add(m, 0x300)
                    positions := 386
                }
                // zeroed digits: byte 16 i + slot for position i
                let dEnd := add(digits, shl(4, positions))
                for { let p := digits } lt(p, dEnd) { p := add(p, 0x20) } { mstore(p, 0) }
                let s := dEnd
                if iszero(op) {
                    buildTables(qt, 1, s, mload(add(w, 0xc0)), mload(add(w, 0xe0)),
                        mload(add(w, 0x100)), mload(add(w, 0x120)))
                }
                // u1 = e / s, u2 = r / s (mod n)
                let v1, v0 := powmod(s, sh, sl, N1, sub(N0, 2), N1, N0)
                let u11, u10 := mulmodn(s, mload(w), mload(add(w, 0x20)), v1, v0)
                let u21, u20 := mulmodn(s, rh, rl, v1, v0)
                // u1 over the G_j (slots 0..7); u2 over the Q_j (slots 8..15) or, in plain verification,
                // whole in slot 8
                let len := wnaf(digits, u11, u10, 1)
                let l := wnaf(add(digits, 8), u21, u20, op)
                if gt(l, len) { len := l }
                // R = u1 G + u2 Q: from the top position down, double, then add the table point of
                // every nonzero digit at this position (bytes of the 16-byte row, found with clz)
                let X1 := 0
                let X0 := 0
                let Y1 := 0
                let Y0 := 1
                let Z1 := 0
                let Z0 := 0
                for { let i := len } i { } {
                    i := sub(i, 1)
                    X1, X0, Y1, Y0, Z1, Z0 := pdbl(X1, X0, Y1, Y0, Z1, Z0)
                    let row := shr(128, mload(add(digits, shl(4, i))))
                    for { } row { } {
                        let slot := shr(3, sub(clz(row), 128))
                        let d := signextend(0, byte(add(slot, 16), row))
                        row := and(row, not(shl(shl(3, sub(15, slot)), 0xff)))
                        let tab := gtab
                        if gt(slot, 7) { tab := qt }
                        let ax1, ax0, ay1, ay0 := pload(add(tab, mul(and(slot, 7), 768)), d)
                        X1, X0, Y1, Y0, Z1, Z0 := padd(X1, X0, Y1, Y0, Z1, Z0, ax1, ax0, ay1, ay0)
                    }
                }
                // x(R) = X / Z^2 is r or, when r + n < p, r + n: compare X with r Z^2 (and (r + n) Z^2)
                if iszero(fzero(Z1, Z0)) {
                    let zz1, zz0 := fsqr(Z1, Z0)
                    X1, X0 := fcanon(X1, X0)
                    let t1, t0 := fmul(rh, rl, zz1, zz0)
                    t1, t0 := fcanon(t1, t0)
                    ok := and(eq(t1, X1), eq(t0, X0))
                    let n0 := add(rl, N0)
                    let n1 := add(add(rh, N1), lt(n0, N0))
                    if and(iszero(ok), lt384(n1, n0, 0xffffffffffffffffffffffffffffffff,
                        0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)) {
                        t1, t0 := fmul(n1, n0, zz1, zz0)
                        t1, t0 := fcanon(t1, t0)
                        ok := and(eq(t1, X1), eq(t0, X0))
                    }
                }
            }
        }
        if (badKey) revert P384InvalidPublicKey();
    }
}
