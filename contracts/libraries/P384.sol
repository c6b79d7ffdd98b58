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
 * - {precompute} once per key (a 9,216-byte table of multiples of Q, about 2.8 million gas), then
 *   {verifyPrecomputed} for every signature under that key, about 1.16 million gas. A registry that
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
 * - u1 G + u2 Q with interleaved width-5 NAFs (Straus-Shamir): G is split as G_j = 2^(32 j) G,
 *   j = 0..11, whose odd multiples 1..15 are constants here, so u1 costs no doublings of its own
 *   (digit i of the NAF of u1 multiplies G_j's entry at row i - 32 j).
 *   {verify} builds the odd multiples of Q (affine, one inversion) and runs 385 doublings;
 *   {precompute} does the same for every Q_j = 2^(32 j) Q, and {verifyPrecomputed} runs 32.
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

    /// @notice Length of a {precompute} table: 12 sub-tables (Q_j = 2^(32 j) Q, j = 0..11) of the odd
    /// multiples 1 Q_j, 3 Q_j, ..., 15 Q_j, each point as x || y (48-byte big-endian each).
    uint256 internal constant TABLE_LENGTH = 9216;

    /// @notice The same layout for G: G_TABLES[768 j + 96 i ...] = (2 i + 1) 2^(32 j) G.
    bytes internal constant G_TABLES =
        hex"aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab73617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f"
        hex"077a41d4606ffa1464793c7e5fdc7d98cb9d3910202dcd06bea4f240d3566da6b408bbae5026580d02d7e5c70500c831c995f7ca0b0c42837d0bbe9602a9fc998520b41c85115aa5f7684c0edc111eacc24abd6be4b5d298b65f28600a2f1df1"
        hex"11de24a2c251c777573cac5ea025e467f208e51dbff98fc54f6661cbe56583b037882f4a1ca297e60abcdbc3836d84bc8fa696c77440f92d0f5837e90a00e7c5284b447754d5dee88c986533b6901aeb3177686d0ae8fb33184414abe6c1713a"
        hex"283c1d7365ce4788f29f8ebf234edffead6fe997fbea5ffa2d58cc9dfa7b1c508b05526f55b9ebb2040f05b48fb6d0e19475c99061e41b88ba52efdb8c1690471a61d867ed799729d9c92cd01dbd225630d84ede32a78f9e64664cdac512ef8c"
        hex"8f0a39a4049bcb3ef1bf29b8b025b78f2216f7291e6fd3bac6cb1ee285fb6e21c388528bfee2b9535c55e4461079118b62c77e1438b601d6452c4a5322c3a9799a9b3d7ca3c400c6b7678854aed9b3029e743efedfd51b68262da4f9ac664af8"
        hex"099056e27da7b998da1eeec2904816c57fe935ed5837c37456c9fd14892d3f8c4749b66e3afb81d626356f3b55b4ddd82e4c0c234e30ab96688505544ac5e0396fc4eed8dfc363fd43ff93f41b52a3255466d51263aaff357d5dba8138c5e0bb"
        hex"a567ba97b67aea5bafdaf5002ffcc6ab9632bff9f01f873f6267bcd1f0f11c139ee5f441abd99f1baaf1ca1e3b5cbce7de1b38b3989f3318644e4147af164ecc5185595046932ec086329be057857d66776bcb8272218a7d6423a12736f429cc"
        hex"b3d13fc8b32b01058cc15c11d813525522a94156fff01c205b21f9f7da7c4e9ca849557a10b6383b4b88701a9606860b152919e7df9162a61b049b2536164b1beebac4a11d749af484d1114373dfbfd9838d24f8b284af50985d588d33f7bd62"
        hex"ba2213c7ad62b8956272beeb51d258a2a5be804e0e29eed161a16216ee89fb8a45346c2d84439ac81ac3b9d675ef7ecea8fdb93c446d869e1c7edccc1056b3829132448edf5f1ec14759e13826deab8ddab5a0c08e055df0022346250328049b"
        hex"7248a3aa81c4301b47cb1991cb74183052e60d5fef388a139d97e6d72c679c020e33d28d804b19a40825663c031046bf46b6c5f1fe24f7f5f0e1abcaa8e134c53f712ec19f1ce7a1dfb2d68439f1609a6d67883c2a0fd9bf5590122e6c71c09f"
        hex"e15f1247f79c1f7428edd86933f465671d39055c8e758ba595e5f10e66b80a4364d263dbff3d1195d3d7eb89b3f918ad5119891b2267a80903a8a840d134340bd9f1d198fdddc7a709d3c38f4117d2cb5b4f6c56e5adf233be7bb217ce5e5a60"
        hex"0e83d8bfca7ad1596eb085a7c5bb448187864e71ab2de70531b73b30fb1045c459bb17632058fd63fc65a1c97b8d1ef3d47ac1c48b224bf48abb7e10564c994e24405c914fb2c36dd860659223193bb29c01e861f4d9b85df0b3debfa477589a"
        hex"af8caf815d8b29314954578ca7cb7e09b0a8d529756555766a393a9b4c2b9d64647c386103ba301ebe716fc3ea3fcf2fd28f56ba2be886bb07400292ea14732873a316664421b01cf6fe1826bc78ade528446373062d7ae61a791d53b1eb04f5"
        hex"dc486494afb46386699442616cd86ba667965be92e93167dc6e763f4c2a8760dc7a97dc37834c249dd74286f4b27d4996024cec7b0f62d52be35abefc1edc1e745dfe6e0c7672f6d0402d19be5ae90fd3d25e2aafe4c8f0592250c5451d2e2ce"
        hex"4861c350f92035ebbae6e5794cfcb7928b702ddfa229f4008084e0dfa6b7c841e8667c86c947caa2a4e945c249ba29116de636b1eca720cb9636ecfc200d717e7580023893e9a060b427354687a199f60f74325291d4f68525306d05e65c7d48"
        hex"655e10aee9b1866ae91f98f108c7b6a96693b1253808768e8f76d2bac6e0f0a4acfd55297e5299470ad6e7050f41048d02cc9087487f667da3836a9f3e3693c459fa08980fa5e040f8b54abf4c7e36a7a6ea0fbf0c99ecdcd14d22a05b09ca5b"
        hex"079dc566510cc718ff348797e2cfe67c2fce93bf5f6f39bf74c1ac3d8cbae3ef92dd9cdedfa0f56d06ba5918d74d9642a64da09a5d9087bc89a8437e5c806f88626377708484b5f136275538892459a929f49d50cc51c42fa0ecd5d0c16bb523"
        hex"bf5c57a193b2c623769f7bcad12a07aa3e29c9bf15e87f40f40da447efea1fb3d1ef5a4573890790815fb712b60d0ac66f615c1693cace0ba540e4fbea6514f2380830c6442cf9ea4cd34a8f2e1c30a1028ba2b88dc862815682c9a2ad0f80a0"
        hex"9137d017334d94779cbdcd186f8e00d6d2313fdfac7b889fc12e5bdb0c789a68363ddf01ebb420b708e4b1e2721dfce24e49496d0f86b0cec7b994680efbeb3b5ed1c727deb44f668c0ce678a1ced644db2818a9dffeb03844db714a784b0871"
        hex"efdb05acd0e93ed1355ef5cf333c2d86083f76013509d22bfb76715912036b425a2f5f647beb454d7c03df6fcf73fdf9c3e4b638e4c3e43aea28555d2d9fdd69bb54747e85b8ab033f43747d0140c5595613c62b4a00e9862737515b6e2ac34b"
        hex"73349e8fa922140fd0a874365fc38d9d1383324ed98007d5ba9c2357859828821fe4152dadbef9a669280d83f5679c308022a598d85c264f08cb0fa2c21fdc741b2576fa8723cef3d888f058afa83e51daf073dd6a3aca2cd984bf599b310c5b"
        hex"2845872f040059682a684b3d9572e8cc169680d6e212166e1869fdff5425711cdadf1e5cc7642c03d6847c9c8eee008668f7571e148cb6d8906bf56395d65825238392250e76f2939944a3be2cd011d7e8c2f8c69848653102e145990b97226f"
        hex"20b7bc99b476f45642d0ff249c36c02bd42f8ec93cc3dc4c75ea1cfde33b308b918382ea978f0c62e2ba5ed63be71d45d634b4fd20ef377c290d5161ff37c61ceea72e35ecba9a5c9167601027945ef7dc37cbd5e70186e688c6c7ad3bd8189b"
        hex"73073e7417042d13a6717d804c5b75a5f949f290606d52325dbbaa2f33f01076718af55dafed4d3e896a3c0be042a66e567b5ac80bd506b930cd7748855956db6bdb418f09b41904da7b2143872ea76ba66db18def85a60b1a7b91e89741af5f"
        hex"f532389a060cbd1bd6e98b0d37ca7abc4360390918141b1a4b58808b3f8686a92c3e0c91558717db39c1b328d8ee21c9b9d2852cc3b38e696f04caa2de3a82babd22cfb2a2124163bc40ce5abe64360331ea31b1085a4e9a7a7e183923d86ecd"
        hex"0418585a723ee7d764b3f91021d69d606e1a959e6b7bdefe8a91cb7cb5b8f7c2cc703c487f58dd3a7ccea65f9fbf5de5f190be7e57543114741b85ff12ddb1024e83ce078a0f010c56ad8f91e4bd2494aa90698a0d83371c6a7e5c7c5b797de2"
        hex"1a770f8f129fd4665b9467e66292f5a9f60b9d3b1338db1e629ed4e73084bc48d18151ffe2208a39925cbf46b820cc41daabebf43cc4c2357993c5fd468318af4efef311286a9c70ab88d4875dbc3fd7a0ab0a861ea8c1339861f6017845743c"
        hex"c1e6e5e4fafebc0476962f417dd7366b93f0298eb4e18052a3c6dbaea15207d55aa2b359e02c66779a5b763bcad68884f89cf775716aa814eeceec43981400f35f70404b287efc3545e38fe0f8d84364c29ff9a8c58f3797adaf35a2b7cf818c"
        hex"3a4efdea733bb4344dd104e88b4ee9701263dc6e16361f04c1057efa78d58b7e5d36c4451df5d737e3035e8bb73046bd7b380b0c906e8df1744013ffeec7fdb79744cf5ecdb043a9814bc4b707e01ec5f9f8363b61f44c47e196405e771ccad7"
        hex"e3d3b27d0d8690be32389c110af8a3de3ef248fec1feab425bc04a032beeb8c654e727e856e552992530775618a2ae9119cb80b00c8c4aafcf84aa5dbb3e880f403879dab5a0fe7a94e65eb71297a5aa2b9802ea3beef187757dc8e9ec6b2aab"
        hex"df181e550b10e502fbb78089d82faac61c05f2c33065dc57442690869f0429fbdcff73bd59a78c6ce3e631f2a0e7d1eb476fd1648f533d5a72e757608cd734a3bc741abe7a6026d59c954a5fe792b218f4eda4c30187561ea1922ca7ff3ad464"
        hex"ec5178a186bd702ac17bc40d1b7ea9fdc6749ddc6f0db54b7f2fef396c065fdd790cf3d3e04187654157898036e489313afac506992051b26c83ee80cba1ea69281a7d2491b32ee96e252d7261f65d049239f5d181deca0d22895800e6276d0d"
        hex"e10cb36d11cd506e23a42ea485d5a52411c2df652b7b03e92bb64e18287c9b53ea2b1df419bf5f4984a2ae350020362ed7e679724697d36352ec806a31d6ab0b425d781706cc84c07768fb7fe90ed2a464666b5536adb53ee5f50bfe2adaefc2"
        hex"ea9adb70032fa744051536092724dfc0993fdfed5cb914af33a8c003301b669cf11bdd66654df12544461e29d49176d9e7a7bd33721708c4acae4c89bbf92795f042c49183888d47acd1b0e5b77b664808c546c04a2685233c262539d90e8f39"
        hex"edbde93e25fb3a4d38271dc86dee1ff639d1ddf2b349fca2607bf4d56456c33c472271d71ac10c82be9f82630b2377adee5fe7ce10473d7ec7a665074bc8a462f90e2ebd8828d3151f388b77a701a3559a8d2cd92ffba9f5d3dee04f87a4ee6a"
        hex"8a7ffacafa71e7b9232d6fb47f51d2f0d7d9ef0c3c50571d7fbd82ad8279e64dc381731bd783b375bdea727c94afd76519ef4e9d9ae7687c6eb5134ea138de479c3fb00946a8a6f518b493170407c734770aee82b3026dc8f946afc19166e3e8"
        hex"8944091c4cb4ef4eefbd8d6c9f18f16230c3c85923eb565f01ec1c68cd251d18a0cb6b78d872a1dab645ed4c1f546966ca35986564306a70c31f2a567e299a4f666c0c3422edce1c9f324965e89e5b90d9602c950a1b80a2548a56098b8bbf50"
        hex"68653a176a50f58f7ce36226e32da327d0bc5768a9a136902766ef72a260bdd0e8020d4f960a6f11c4bdb226b912851efc7a121820146a06b3977605c6a661769c162213462595dfc63b63af737f1213a0c2e8efe467110ffab0d9f3a0450817"
        hex"10c7f87d4603ab5893e7b76a8012430d3225d14e4f29c1f9133bd63f3260edd9916b8f3bbe9ff3fe345876cf5811e3952ddf00f2905c373aa395dbfb5bed03ac8958c1b019bd858cc7575b34d953af0cbc374780401e88ce70361939c0f7234b"
        hex"575d5ba75f4a65877393788bb2b5a18dc84f622eb37e5b918c2b0ad00181a02178bdda489d1a5f28c74a30798911778c1cc8ca4bc218459d31b725bc8d7d49d40886b30709184feaf9eb201892a47b6865119c3783614edce5dc1c263df4e660"
        hex"778bfe301d798ddd5f9507f0846e6f593d84e21e77d8d02f054cd79b9caf93b8511af0d367fec6ab8568960c8456b4dabe41e479a3ae9e76150686bf1ec658a737869c2f72f26ec8f7f6ea02f76431b9fca8c5befa735802fe97a16b1b8935ff"
        hex"0dd522a7e9d37f67696350f3d4a86e5f2e21f4b5d9ac5119dff3a5bf08dd6be22f07c163f1bd60f0132b090e377434d0917bf9c8163763d5ffeebd3e6d93bab1d34cd59195742d5907e96de9445c677c56e919122ce2a87f3652021152e2b852"
        hex"42dff0f76f44bd15607d942bc653f347a206fba34ce0880c8b5895c36e9dce47ee4205b5e696f6396a66eda1a87014303ac4d3d03758be5d2ab7692e7f5f203788c40fe3dd8efd68019324436a7c173175fd8b4c86e36b3ebf64be28dec93846"
        hex"d283ab71366e54c6fe819ce2827b5428f81509ee785d00082f4df00eb757cff921e9c4a25e43c9bfd15665ce1814feed0b3ef0f6f9c173f42a739543a339bedb23bf513bc37928204324bbf5dcfa71ea1fe6b2b2038d954288ecd5a16df187db"
        hex"2eca959b836c58a0aae59d1c63d81ddefd26a81470b5d1b278499a5860a65383584a2d57ba3ad38d097cc5849b0ab53419eecce240647d56bce18cf7fe8f1dea903c56fe7b31cba4dec879c34fcf13422e4bd5430fd856d79d9b972c146428a4"
        hex"7f4ce0d5b15d9051bd9e48cec5d6569a3816832a50cb5844da632bdafcbd168397afec2ec67ca8217fbbd655e9a33bbfdd7be5b640f10f4c41b507e6a484201824d30c1aeb6774392995f8f610d9429a041fead2069b6d3a6afa726d3ba26de3"
        hex"381cef2de42b604de45e91637a12c205084a014b184df78d48d792de335c814d31ea3f963f7155b14fa3daa2f20142e200ce7a04df49326db9bb1209dbd11127a7ee8ff240f75dcdc401ad73adedfafd95cde1ecd6f30973c7f3e606d3e193d2"
        hex"29873215eab099bf86f8a8bf895f7059db1d3d5c088bcdfc03ec20e067b9b394db6254bb3d3c786086ce89b6f590ffc9185109e5e8af6e990ace40b24e885a8dbf2c67d4b8bb9ce519cb632fd302aa818ced14f90f09bca9ef4c7c11720cbb17"
        hex"c19e0b4c800119c440f7f9e706421279b42a31af8a3e297ddb2987894d10ddeaba065458a4f52d78a628b09aaa03bd5316f3fdbf0356b301e5a0191d1f5b77f6577a30eae3567af9c1c7cad135f6ebf2af68aa6de639d858822d0fc5e6c88c41"
        hex"1a509ee26fabc337f820ca874cdf382a623be1091e0922c4412788de72320efe88525311345523a8c6d13d9055de60e29a8d3d400bcca1dcb9484b480e0efa1caf3d0a9e581798b747cfb5b11f77605fadded6ea7c7fa6fb2123b6403da53b9d"
        hex"4a8217c8e8cc4419738eb43dd2f845cc5ec8010e2c6a277499a04bbf5d54eef2b2ec62213b5e93cbc5405556f13d61f791306dbdcbc986256c9fc6a53eda619d7a68a8ed13267b0493a8ffa5aa6ee304e2a5656ca3a04352365707829026fbd5"
        hex"ddde438ae7fe418c5fd943bdd58e4b2d0d57f75a8775011000098538b5829b862f7c46cd22f78e204eb8364d4f3bf0bb87ce6a49d7917ea90efe506d140f34f1734ed3a684d64d337088c49da6f2dacdcf32925b999add1feee61463e6173c57"
        hex"d4ac6ca5588b5558c94be86415ef4658d9a47617893a764b7341f958af1b2721773174ade385be745834d4f7db6c1be099324d723d21f15ad9af8db89ff512698605b3039ebfcca764150312f4d875035649d764e40dd43da68932ed604e818e"
        hex"3d19f7b68598ea1c283c8171ab5f0adfb20d327ab44da1d64e78c9326d4775c74646c2572e6ad902d10ca702a86b8e143b584e20861bf7acf66c491b525a584b3bca0e58cedad4786c32eef25e1dba663498e52a4087d5aec6278782a55e2f41"
        hex"0721e722e78b42300c0c95778fb3a10ad3be245cf876e128ef46906881ee09aeb905c03e035e69ab5426c15584bf0f5ab43425d7792071bcd37ccb7b6f07dc618f6958667324af4057263b126fdbcaa14e0df12a2adb450e89029149d9f6804a"
        hex"57aa537d68956272256c2ece57e772e9f78c1e3b322dbc5504206e68132d5b6274bbf4ae28be38f9a6efa42d1912f701fd99d661ed42e9826ebc3f9e0c6be476978c9578e72880c783b1d3b1358784c986b1e009aadd2baa6958fd4e026e09d0"
        hex"64247c77848b8e4e2f1f10d1e589ff8b31e3d90a8c3782b829242bde81156ecfaa51cd7b51f9e5b661f040bec690ccc6c3b58cdee179a68093664f3bfbc4cd34e05e0653bf73456805dfc1996e22db4bb1cdeaa6331a0e134004d2f287e2519f"
        hex"5fc7ddc5fb881189859427d21bf2a51638d0b1fd74a9df545294a84e9a7564a726523df2931a1889ed604529c3b3f614056b6152c12206504398f6d299a6d41ce3e0ac074a0bc971abad404776dc96548013d279b2c1ddc0f6d2bb3a3d225e23"
        hex"8a695b6fe1dde5587c7dab9ff932931b9501384f854656e9f46386c805eb03729a0df6a79f488fadaa1392c0b037597d770d7a7963d7c48e26b203a0bb70840e6d71b2094f082a61873958ce341f5b38dd1c5d1e897d708a300b341045dfc120"
        hex"ae3baaaa54d68835e1b94edf34e1e86456d4a42cd23c37d758d2d6bd6b400d8688f3c8035c50c703934e134b639d8c12781d73fb83527b95626213d3f23020bf6fa52bfd6313f071745e0746ba5aad60b17c79b3adf90634d182449aaaa95062"
        hex"1d5da10d86c86daef94233a7f0fefa7ee8de42e88ab15252fde7db055a40a136d3420de5d11548f1056be3f7ea2e27d0c3678177363ee563449fff66a4d9c7b94d1cc6378d3f00fe1e8896d2e9cbef420fb843c86c2ef9ce4abca0e149d33e02"
        hex"8fe3e1b1bc38e74a23141d4c645d3ae4637c7d68e393dae28e607ae226a9b8a225effc42bb9a04dd90df1c81c3ae7cfbe064e7617faa8088dae7648dd2b719136c36e3e9aa5c22009af8e783c76fe09c10e223e47daf4f5d60a5e825e1db521a"
        hex"632420f8fa5041dc4e6460de2d7132fc6fe7a0e5311e5aec107d098af9d9dbfb5d60b902b0029c8172f06cc42bfdedbf810eb3ffcef2535b3d3afe9ac20edd2c82c6688c96279b136bb345eedc049d499e18548b723f7c2688f994e863ec6739"
        hex"37c3985d6bc47723530f47e7dced61db0b7196d69f75a1488b57b11cf0fd361f005b635b2800d75a1948c489af032c3be1addc500549eab76b35777000b33ff488ab8a2f8c2e61c8e3d1d82bfe4c884e5f840a231c4082dff88a1de479ae7930"
        hex"e7b3f42dcad3d10923eaf4cdedfb898d39acb8f22aaa34511af000f8cd3d0497da74bdf2bb0f6ca731efc1321a9bb0aa5a5d5c5ffc212920b18e3fba8615e7a5bbb25c8fc463e3b880a93ec7216b71d56f5911020e70a63398ca61b55e695394"
        hex"66f3f75b5b66aaa98aaf79222ca76a4d93ae6bd0b3baa9392686be11a0ffbb782e1671ca0f9c63cd898bd3db511b69f8bc173b81175e091df15f4b571c1f9232424e7e026a91cb264653596fa263bc4671322859ccd953cf1616a86b57f6ec88"
        hex"c2950bf1d4f7b9e361810663a26b8fc24e3447281798c742de0077d4b29d8107cc8cf57b3c23b51fe764ef1bae89eb473ef665c85dc0e92d0de1332d19aa256ff5775dd180491f313df9236c8011f82053076ded8fb1a4de67fbd84c7276264d"
        hex"453096d7e612166deb383866dce68332d595d1703892bc87cca507d8b1ff9a4f50c3fa0aae1493f85b95e70a8ac2a4fe9adb343a2cceece3d625658c1abb225a6d3ad09bca2188bd50ab2d4320e1a5328d3c3a8922368b9a6777c8e18c604cfd"
        hex"1872d3cbef057bb8c57ca301240a5ef4976317b01ba028343d6529c2f7137548788ed544a31a9f8f1cdba50caa41af2ab2e31f66c0544bc5c5f2d285fd11d933bd9ac101dd2a9a08861110b1ca394f2dd91fed6d110970741ec209501e6f863e"
        hex"3f4bd734bdb0012c18691119dd9c81bb015c5033b02842ae9382f945291d741a3a90b6433ee50c523d5b69c6df823a33938a3dde5546ff4a7f70e4b8840abfb0c151524fcff4c0db936bfa0277ae573e74aaf68a5741810b044d409d2293f63b"
        hex"e05781a2e2cb68008b15a833069a2a62fd0c4ed3eec546073890ed1a6e179496148af7f94c09c67d6e1511ea3506ce8452ba0d3ac7bea2797b7759872c8a76440e8ff2d87356031f62573dd4b604583de9c67244577fb238f684d4eee5472581"
        hex"b4536ec4544f6b32e3dbbdda28beac7033467d0a75b3c0dcaeda2f960afe78bc317c43a4e67a3ab40e5c9cce5f899dad739a9bc3f11f688895b77126eb491dda4215a13845a36283429840ee79b6385ff2ae9d2a5ff3772ffc68e3af07d768b0"
        hex"b2d1055817cbaa12211905035f4972d7097da395a23096863d8b29dbd08848c2f33a450ad156f761e4bfc2c04905ca71354cd872c3c6cbd2237c0dba3cfd056bf82be8f52e6236c09b475d744ecf1a68e87ab07c6924666fddcebb55753ee324"
        hex"8472b9637604fae7e0182345b2d31bf7616051990850907d546404d46de55f63b19a9fbb285863969695f73575e58cef251467f2c874129442a0b0d6cbb0f7b70fa7cfd617e9d6ccd631e4e97add939f45fb72b75299efe192c2138749b28e0d"
        hex"a94cb07b417acc6efcad1de573b122e4990bec9131753e2ff5d115bc2320c788007da251424f5265f3cbed25c2dd943aa76546d4bbf4dcb3db109846397562beedb60b9b08be72803ca7a5717969fb8840fa5182878078db2223f73ab9516d33"
        hex"186d6834241ab8990fde8f0660e6eb6d24d587bc7625eaf9c2c94d2df7a9cdbea8f5a88bc6b8da27f772079d7a92e0550a9fba17106c9a0bff88fde20e9d18061d6dccbb347ef924fa81c6ae65151eb4f033a2b4efcea4812293e645ae4c265e"
        hex"4d19c787f303289549ed5a2d289d3a4f7b9a656ef246a586ffe0eb17b46f837d16d6f9144b7ed1e2bfc7abb7b38615426211c6a9781496ce6eb37cc388abc5863835eaffea2b7840538c49bbd3bf86521b30784fb609c245719dd3daab66bccc"
        hex"529ff0dae8c3b11103f1310f1c5ac1dc6a75bf6fe51d885512fff68f36479d0b627608bdc70f9e783df7bb21a4833e4fb8cf21e81c3368aed3454a0197d3bb0d5b6b16eef7e99005e42c6d006cbfd1623a5f3041639168fb293ca7a2559c8274"
        hex"f09eba03bffe562379b53d41796aa45e05fa1f25e3f8f6bd90f218d0ad840206ffc8c0bd88ef060f9684c93050295856fb144a63acf26debacfc3e6417e75674e3a43baac3c0b6bd96562bcac831e4f2386af0363c837fa0a99b769b661e6664"
        hex"eb1833c955e8ab1e100c17c6fb0baff00ec6779b81dc4e605fcdca2f8f5e4ef6f799f9034694df91c9bbbca8f470af50b75b527d4468de4f48bf00e6324ffba5840e2c3c6d523f6869a38e7c8658bbd57c8f1779865e9128b2e79219e73796d0"
        hex"38174a006bfcf21e5f5449e75c7a9ba185dfb3833007a48289acc4c0b1666eaa1323feffba0f8b3d110162f2968b4a5fd637fbf692ee7c2ee0bcd7af2055ee909b795d801605976de6091c183a45ad1713f390d740cb718b9f7dc2544f0474fc"
        hex"fd80de9fe830cfffa3803705b23ad2f1b71473f1c1e2abca0c142938a597c62afbdd75153a8b9881bff1c0bf7fa31c8deb5b38a8f3406e2f50ee8e604a94647ab856468ff470ded8462759f16fd2c4902500985515407260732e194b1f6f63df"
        hex"5db612a10c3999293968f45f64fbec0bcbcdef5b3e024b4c3d70622378decb7263d639a2002fddfd0b727de9c7e761a1322ab1d768cbe962f62f2c1b5e0c8eab9ff5ed208cc2e576bb237674d99f6e4ff5903f6919c92a9dddc8f122ea12873c"
        hex"e7f0de6808998593b9807d76120cad15963084e9cfcc3b8edb3737e42fe06e11209da30d2de95c08f264ce3db9151a2c7527e8c43d9686093a451382034c9c0a8e4303766ce1ae053186cff450b44d62a769bf6b7857cebad9820666e91568f0"
        hex"43e70927c6ba0e66933a001b6cc839996e32cae9d2d010271ae6db0d959f5549eb4fba2c230e138e495b70c343d998603fa457783a5c49af70bac8af2933b718d762e6fb7fb1933c22818bc7c45e7a25983ba9c1aa657c7198925f1c1dc5cb12"
        hex"b062d850a7f520008582e45daf8b2bed0d14122fb8a55606b846b0ffb05fb60fcd6890a0dbbe5433726149a446dfb84dd8d5f464b76b7ffba09a50f69a471e7f51b6f9764274ad149168d949fbf714cc2b4e093f702367124d8280bf90ebcc97"
        hex"fd513066ada2be0ff895bafa66dc597020954adbffc658b3e2c5fe1eeb38d23dbd2a7657cdf31a65e2cbd19bc7f52c70f8952ddb280cd163652726c057765c2cc3e7e85832c4f5f397576540e8af14da9aa08b3ff26a9cccf3f85e601f4d0c3d"
        hex"8c4591e428ca9aff9105fe5f9f0f532f6952584c24e82f018991bc2cdb73dd6020997b9d4f682384b9d14fa316ebeddbb9fc25b02a75fccd1abe78a9b8ac562fe37783ed6110253ad797439137e023a65dfbe98c16591c3f178842116e6dfe89"
        hex"121ddf8c98286ca2e1a0ae1734e62f5980f7e38131fa2ac82c547f20f98f3f6ba205d8ff15754e8d7655aeeec3965d6c5459524ff1a7935899c6e5cbd84aee9092a91a35e9cee91371fcdbd2251ddb378e49391c5329d56362ec2e880205f0d8"
        hex"1d79343c22eadbe15591d449aea335cb0cba9800d8de2cdfc290b110e8975a6a5b8b82f2648b036e8f0045f25469119eb1a768b90db88aafa4b8f7f3a8239701534d28ab9492044f8fd752716ba13eb842e7d9dc067f13c629c1e44deb23b82f"
        hex"9ae26379065207cc491786f5d4c91c531ce39d1ac3661883e2ea06fa9e06c1049a7f901f8ccb3208f201bc5b740ae453a896a21d956d42bb74e6802f9459fe31fc332b873088ed61d91bc0ee779fb65bd7bc36f16575060870fea387820767ff"
        hex"e34dfc82703fc29f612087c73743b29b18140513012d87c60f110a7366940ae1cf3bf5ed4e393530975f718d5f61095cbafd54946de813c4149a156903e27df2464e18a637db2538b336ecba07596e6f271e02e9313a036ee4205abc0b0f3aae"
        hex"913343bb9620d8435762d057bf3355f973b862d38b635424e5caf2a09a53933defe52be35cf418e93ef047a0eb99cab283c06948a050c37c942991ed769031cb5cf036b917284095ad9aadfe5980da4692a6ce4200fddbf93be2436f4d63826f"
        hex"abd7d6d383e905c28ca40176ff69d4c6b99a933aa02aed4564dbd44b842e2f901c6eb1075b2bb15aed9b030de7a3976bfecb1ac0c185e5263b8e5aa40a55e9d7ee8006a22dc5477af94570a99ef8bf671e5107f9183ae2cc1ef968f327b193f1"
        hex"fb8b965d8b682c4026680f6b9f4505e441d91e46d454bb5e1ba7da974ed9eb74e41f3117affe29a235dd6bb389c9592dff3a8fab635ff8f7f77adf2f6d1ef2a511ef09ea568a7aca6b88eeae08d7ba2cec905d8b6d3df610c632d9630e934ace"
        hex"b9e7a243149ce8b93ff106ea343b0c634200f168f23cadb20b9f71e3aaac79ef3322f3c97da8683a293b6cbb508f4a5ca26c2470295b514b3de2db30ea31a6fc6fdc7481b320ba084815681360e6dfd6cfb0c722ec3bc965ba8361306e29c974";

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
     * Memory: scratch beyond the free memory pointer, which is not moved: about 24 KiB in
     * OP_PRECOMPUTE, 15 KiB in OP_VERIFY, 1.3 KiB in OP_VERIFY_PRECOMPUTED.
     */
    function _core(uint256[11] memory w, bytes memory table) private view returns (bool ok) {
        // the operation travels in memory, not as an argument: the optimizer would otherwise copy this
        // function once per operation (with the 9 KiB of G tables in each copy)
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
            // Tables for Q_j = 2^(32 j) Q, j < count, at out; scratch at jac: count 1,536 bytes of
            // Jacobian points, count 512 of prefix products, 240 for modexp.
            function buildTables(out, count, jac, x1, x0, y1, y0) {
                let z1 := 0
                let z0 := 1
                for { let j := 0 } lt(j, count) { j := add(j, 1) } {
                    if j {
                        for { let t := 0 } lt(t, 32) { t := add(t, 1) } {
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
            // Digit i goes to the byte at naf + 32 i (two's complement), or with `chunked` to row
            // i - 32 j, byte j, of chunk j = min(i / 32, 11): the digit then multiplies 2^(32 j) P,
            // which G_j / Q_j already hold (digit 384 lands in row 32 of chunk 11). One NAF of the
            // whole scalar has fewer nonzero digits than twelve NAFs of its 32-bit chunks. The bytes
            // must be zero already. Returns the number of rows used.
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
                        chunk := shr(5, pos)
                        if gt(chunk, 11) { chunk := 11 }
                        row := sub(pos, shl(5, chunk))
                    }
                    mstore8(add(add(naf, shl(5, row)), chunk), and(d, 0xff))
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
                    buildTables(add(table, 0x20), 12, m, x1, x0, y1, y0)
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
                // Sub-tables: slot j < 12 is G_j at gTables, slot 16 + j is Q_j at qt.
                let gtab := add(gTables, 0x20)
                let qt := add(table, 0x20)
                let positions := 33
                let digits := m
                if iszero(op) {
                    // plain verification: Q's table in scratch, a full-length u2
                    qt := m
                    digits := add(m, 0x300)
                    positions := 386
                }
                // zeroed digits: byte 32 i + slot for position i (copied from beyond the calldata, which
                // reads as zeros: cheaper than a loop of mstore over the 12 KiB of plain verification)
                let dEnd := add(digits, shl(5, positions))
                calldatacopy(digits, calldatasize(), shl(5, positions))
                let s := dEnd
                if iszero(op) {
                    buildTables(qt, 1, s, mload(add(w, 0xc0)), mload(add(w, 0xe0)),
                        mload(add(w, 0x100)), mload(add(w, 0x120)))
                }
                // u1 = e / s, u2 = r / s (mod n)
                let v1, v0 := powmod(s, sh, sl, N1, sub(N0, 2), N1, N0)
                let u11, u10 := mulmodn(s, mload(w), mload(add(w, 0x20)), v1, v0)
                let u21, u20 := mulmodn(s, rh, rl, v1, v0)
                // u1 over the G_j (slots 0..11); u2 over the Q_j (slots 16..27) or, in plain verification,
                // whole in slot 16
                let len := wnaf(digits, u11, u10, 1)
                let l := wnaf(add(digits, 16), u21, u20, op)
                if gt(l, len) { len := l }
                // R = u1 G + u2 Q: from the top position down, double, then add the table point of
                // every nonzero digit at this position (bytes of the 32-byte row, found with clz)
                let X1 := 0
                let X0 := 0
                let Y1 := 0
                let Y0 := 1
                let Z1 := 0
                let Z0 := 0
                for { let i := len } i { } {
                    i := sub(i, 1)
                    X1, X0, Y1, Y0, Z1, Z0 := pdbl(X1, X0, Y1, Y0, Z1, Z0)
                    let row := mload(add(digits, shl(5, i)))
                    for { } row { } {
                        let slot := shr(3, clz(row))
                        let d := signextend(0, byte(slot, row))
                        row := and(row, not(shl(shl(3, sub(31, slot)), 0xff)))
                        let tab := gtab
                        if gt(slot, 15) { tab := qt }
                        let ax1, ax0, ay1, ay0 := pload(add(tab, mul(and(slot, 15), 768)), d)
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
