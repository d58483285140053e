/**
 * Appended module signature (scripts/sign-file): <module><signature data><struct module_signature><magic>.
 * struct module_signature is 12 bytes: algo, hash, id_type, signer_len, key_id_len (u8 each),
 * 3 bytes padding, sig_len (big-endian u32). With id_type 2 (PKCS#7) the signer and hash live
 * inside the PKCS#7 blob: the hash algorithm is recognised by its OID.
 */
export const SIGNATURE_MAGIC = "~Module signature appended~\n";
const MAGIC = Buffer.from(SIGNATURE_MAGIC, "latin1");
const INFO_SIZE = 12;

export interface SignatureInfo {
  /** PKCS#7 for every current kernel; PGP/X.509 are historic id types. */
  idType: "PGP" | "X.509" | "PKCS#7" | `unknown(${number})`;
  /** Hash algorithm named by an OID in the signature blob, when recognised. */
  hashAlgorithm?: string;
  /** Length of the signature blob in bytes. */
  length: number;
}

export type SignatureSplit =
  | { ok: true; module: Uint8Array; signature?: SignatureInfo }
  | { ok: false; detail: string };

const ID_TYPES = ["PGP", "X.509", "PKCS#7"] as const;

/** DER-encoded OID bodies of the hash algorithms sign-file uses (after tag 06 and length). */
const HASH_OIDS: ReadonlyArray<readonly [string, Buffer]> = [
  ["sha256", Buffer.from("608648016503040201", "hex")],
  ["sha384", Buffer.from("608648016503040202", "hex")],
  ["sha512", Buffer.from("608648016503040203", "hex")],
  ["sha224", Buffer.from("608648016503040204", "hex")],
  ["sha3-256", Buffer.from("608648016503040208", "hex")],
  ["sha1", Buffer.from("2b0e03021a", "hex")],
];

/** Splits an appended signature off `bytes`; a module without the magic trailer is unsigned. */
export function splitSignature(bytes: Uint8Array): SignatureSplit {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < MAGIC.length || !buf.subarray(buf.length - MAGIC.length).equals(MAGIC)) {
    return { ok: true, module: bytes };
  }
  const infoAt = buf.length - MAGIC.length - INFO_SIZE;
  if (infoAt < 0) return { ok: false, detail: "signature trailer without signature information" };
  const idType = buf[infoAt + 2] ?? 0;
  const sigLength = buf.readUInt32BE(infoAt + 8);
  const sigAt = infoAt - sigLength;
  if (sigAt < 0) return { ok: false, detail: `signature length ${sigLength} exceeds the file` };
  const blob = buf.subarray(sigAt, infoAt);
  const hashAlgorithm = findHashAlgorithm(blob);
  const signature: SignatureInfo = {
    idType: ID_TYPES[idType] ?? `unknown(${idType})`,
    length: sigLength,
    ...(hashAlgorithm === undefined ? {} : { hashAlgorithm }),
  };
  return { ok: true, module: bytes.subarray(0, sigAt), signature };
}

function findHashAlgorithm(blob: Buffer): string | undefined {
  for (const [name, oid] of HASH_OIDS) {
    const tagged = Buffer.concat([Buffer.from([0x06, oid.length]), oid]);
    if (blob.includes(tagged)) return name;
  }
  return undefined;
}

/** Appends a signature trailer around `signatureBlob` (PKCS#7 id type), as sign-file lays it out. */
export function appendSignature(module: Uint8Array, signatureBlob: Uint8Array): Buffer {
  const info = Buffer.alloc(INFO_SIZE);
  info[2] = 2; // PKEY_ID_PKCS7
  info.writeUInt32BE(signatureBlob.length, 8);
  return Buffer.concat([module, signatureBlob, info, MAGIC]);
}
