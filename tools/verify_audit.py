#!/usr/bin/env python3
"""Verify a Lethe audit export, its signed checkpoints, or an erasure certificate offline.

Needs Python 3.9+ and the `cryptography` package (Ed25519); nothing of Lethe.
The formats are described in docs/audit.md.

    verify_audit.py --file audit.jsonl --checkpoints checkpoints.jsonl --public-key audit.pub [--range | --strict]
    verify_audit.py --file audit.jsonl                # chain links only: cannot see a cut tail
    verify_audit.py --certificate cert.json --public-key audit.pub

Exit code 0: intact; 1: a problem (printed, first one only); 2: unreadable input.
"""

import argparse
import base64
import decimal
import hashlib
import json
import math
import re
import sys

GENESIS = "0" * 64
CHECKPOINT_KIND = "lethe.audit.checkpoint.v1"


# ---- canonical JSON --------------------------------------------------------------------------

def canonical_float(f):
    """A float as serde_json writes it (the shortest round-trip digits, ryu's layout)."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError("NaN and infinities are not JSON")
    if f == 0.0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    t = decimal.Decimal(repr(abs(f))).as_tuple()  # repr: the shortest round-trip digits
    digits = "".join(map(str, t.digits)).lstrip("0")
    exp = t.exponent
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + exp  # 10^(kk-1) <= |f| < 10^kk
    if 0 <= exp and kk <= 16:
        out = digits + "0" * exp + ".0"
    elif 0 < kk <= 16:
        out = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        out = "0." + "0" * (-kk) + digits
    else:
        e = kk - 1
        mant = digits[0] + ("." + digits[1:] if length > 1 else "")
        out = mant + "e" + ("-" if e < 0 else "+") + str(abs(e))
    return sign + out


def canonical(value):
    """Compact JSON, keys sorted at every depth (see docs/audit.md)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return canonical_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-8"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(value[k]) for k in keys) + "}"
    raise TypeError(f"not JSON: {value!r}")


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- entries ---------------------------------------------------------------------------------

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]00:00)$")


def canonical_time(text):
    """`at` as it is hashed: UTC, exactly six fractional digits, `Z`."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    frac = (m.group(2) or "")[:6].ljust(6, "0")
    return f"{m.group(1)}.{frac}Z"


def entry_hash(e):
    body = {
        "seq": e["seq"],
        "at": canonical_time(e["at"]),
        "actor": e["actor"],
        "action": e["action"],
        "request_id": e.get("request_id"),
        "subject": e.get("subject"),
        "details": e["details"],
    }
    return sha256_hex(e["prev_hash"] + "\n" + canonical(body))


class Problem(Exception):
    def __init__(self, seq, kind, detail):
        super().__init__(detail)
        self.seq, self.kind, self.detail = seq, kind, detail


def walk(entries, prev_seq, prev_hash):
    for e in entries:
        expected = prev_seq + 1
        if e["seq"] > expected:
            raise Problem(expected, "missing", f"entries {expected}..{e['seq'] - 1} are missing")
        if e["seq"] < expected:
            raise Problem(e["seq"], "inserted", f"entry {e['seq']} appears after entry {prev_seq}")
        if e["prev_hash"] != prev_hash:
            raise Problem(e["seq"], "inserted", f"entry {e['seq']} does not link to entry {prev_seq}")
        if entry_hash(e) != e["hash"]:
            raise Problem(e["seq"], "altered", f"entry {e['seq']} was altered")
        prev_seq, prev_hash = e["seq"], e["hash"]


# ---- keys and signatures ---------------------------------------------------------------------

def load_keys(path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = open(path, encoding="utf-8").read()
    raw = []
    if text.lstrip().startswith("{"):
        raw = [k["public_key"] for k in json.loads(text)["keys"]]
    elif "-----BEGIN PUBLIC KEY-----" in text:
        for block in text.split("-----BEGIN PUBLIC KEY-----")[1:]:
            der = base64.b64decode("".join(block.split("-----END PUBLIC KEY-----")[0].split()))
            if len(der) != 44 or der[:12] != bytes.fromhex("302a300506032b6570032100"):
                raise ValueError("PEM is not an Ed25519 public key")
            raw.append(base64.b64encode(der[12:]).decode())
    else:
        raw = [line.strip() for line in text.splitlines() if line.strip()]
    keys = {}
    for b64 in raw:
        data = base64.b64decode(b64, validate=True)
        if len(data) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        keys[hashlib.sha256(data).hexdigest()[:16]] = Ed25519PublicKey.from_public_bytes(data)
    return keys


def check_signature(keys, key_id, message, signature):
    from cryptography.exceptions import InvalidSignature

    key = keys.get(key_id)
    if key is None:
        return f"signed by unknown key {key_id}"
    try:
        key.verify(base64.b64decode(signature), message.encode("utf-8"))
    except (InvalidSignature, ValueError):
        return f"signature does not verify with key {key_id}"
    return None


def signed_body(doc):
    return canonical({k: v for k, v in doc.items() if k not in ("hash", "signature")})


def verify_checkpoints(checkpoints, keys):
    prev = None
    for cp in checkpoints:
        n = 1 if prev is None else prev["n"] + 1
        if cp.get("n") != n:
            raise Problem(cp.get("seq", 0), "checkpoint", f"checkpoint {n} is missing")
        if cp.get("kind") != CHECKPOINT_KIND:
            raise Problem(cp["seq"], "checkpoint", f"checkpoint {n} has kind {cp.get('kind')!r}")
        body = signed_body(cp)
        if sha256_hex(body) != cp["hash"]:
            raise Problem(cp["seq"], "checkpoint", f"checkpoint {n} was altered")
        err = check_signature(keys, cp["key_id"], body, cp["signature"])
        if err:
            raise Problem(cp["seq"], "checkpoint", f"checkpoint {n}: {err}")
        if cp["prev_checkpoint_hash"] != (GENESIS if prev is None else prev["hash"]):
            raise Problem(cp["seq"], "checkpoint", f"checkpoint {n} does not link to checkpoint {n - 1}")
        if prev is not None and cp["seq"] <= prev["seq"]:
            raise Problem(cp["seq"], "checkpoint", f"checkpoint {n} goes back to entry {cp['seq']}")
        prev = cp


def verify_export(entries, checkpoints, keys, whole, strict=False):
    """Returns the last entry seq covered by a matching checkpoint; raises Problem."""
    first = entries[0] if entries else None
    last_seq = entries[-1]["seq"] if entries else 0
    if first is not None and not whole:
        walk(entries, first["seq"] - 1, first["prev_hash"])
    else:
        walk(entries, 0, GENESIS)
    if checkpoints is None:
        return None
    verify_checkpoints(checkpoints, keys)
    hashes = {e["seq"]: e["hash"] for e in entries}
    first_seq = first["seq"] if first else 1
    anchored = None
    for cp in checkpoints:
        if first is not None and cp["seq"] == first["seq"] - 1:
            found = first["prev_hash"]
        else:
            found = hashes.get(cp["seq"])
        if found is None:
            if whole and cp["seq"] > last_seq:
                raise Problem(last_seq + 1, "missing",
                              f"checkpoint {cp['n']} covers entry {cp['seq']} but the export ends at entry {last_seq}")
            continue
        if found != cp["entry_hash"]:
            raise Problem(cp["seq"], "altered", f"entry {cp['seq']} differs from signed checkpoint {cp['n']}")
        if cp["seq"] >= first_seq:
            anchored = cp["seq"]
    if whole and strict and last_seq > (anchored or 0):
        raise Problem((anchored or 0) + 1, "unanchored",
                      f"entries {(anchored or 0) + 1}..{last_seq} come after the last signed checkpoint")
    return anchored


def read_jsonl(path):
    text = open(path, encoding="utf-8").read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", help="audit export (JSON Lines)")
    ap.add_argument("--checkpoints", help="signed checkpoints (JSON Lines)")
    ap.add_argument("--public-key", help="public keys (GET /v1/audit/public-keys, or base64 lines)")
    ap.add_argument("--range", action="store_true", help="the export is a slice, not the whole log")
    ap.add_argument("--strict", action="store_true",
                    help="a whole-log export must end exactly at the last checkpoint (nothing unsigned)")
    ap.add_argument("--certificate", help="an erasure certificate (JSON) to verify")
    args = ap.parse_args()
    try:
        keys = load_keys(args.public_key) if args.public_key else None
        if args.certificate:
            if keys is None:
                ap.error("--certificate needs --public-key")
            doc = json.load(open(args.certificate, encoding="utf-8"))
            body = signed_body(doc)
            if sha256_hex(body) != doc.get("hash"):
                print("certificate INVALID: altered (content no longer matches its hash)")
                return 1
            err = check_signature(keys, doc.get("key_id"), body, doc.get("signature", ""))
            if err:
                print(f"certificate INVALID: {err}")
                return 1
            print("certificate signature valid")
            return 0
        if not args.file:
            ap.error("--file or --certificate is required")
        entries = read_jsonl(args.file)
        checkpoints = None
        if args.checkpoints:
            if keys is None:
                ap.error("--checkpoints needs --public-key")
            checkpoints = read_jsonl(args.checkpoints)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        anchored = verify_export(entries, checkpoints, keys, whole=not args.range, strict=args.strict)
    except (KeyError, TypeError, ValueError) as e:
        print(json.dumps({"entries_checked": len(entries), "problem": {"kind": "malformed", "detail": str(e)}}))
        return 1
    except Problem as p:
        print(json.dumps({"entries_checked": len(entries),
                          "problem": {"seq": p.seq, "kind": p.kind, "detail": p.detail}}))
        return 1
    print(json.dumps({"entries_checked": len(entries), "problem": None,
                      "checkpoints_checked": len(checkpoints or []), "anchored_through_seq": anchored}))
    if checkpoints is None:
        print("warning: without --checkpoints only the links are checked; a cut tail is not seen", file=sys.stderr)
    elif entries and entries[-1]["seq"] > (anchored or 0):
        print(f"warning: entries {(anchored or 0) + 1}..{entries[-1]['seq']} come after the last signed "
              "checkpoint: no signature covers them (download the checkpoints after the export)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
