"""Entry point: train what is missing, extract the fingerprint (Algorithm 2), sign it.

python -m fingerprinting.extract --config=configs/digits.py --workdir=runs/digits

Writes WORKDIR/fingerprint.npz, its Ed25519 signature fingerprint.npz.sig and
the owner's public key WORKDIR/owner.pub, and prints the file's SHA-256 to
publish or timestamp.
"""

from absl import flags
from ml_collections import config_flags

from fingerprinting import cli
from fingerprinting import pipeline
from fingerprinting import signing

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created, resumed).", required=True)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Extract again even if WORKDIR/fingerprint.npz exists; the old file is kept "
    "as fingerprint.old-N.npz.",
)
_KEY = flags.DEFINE_string(
    "key",
    None,
    "The owner's Ed25519 private key (PEM) that signs the fingerprint, made on first "
    f"use with mode 0600 (default: ${signing.KEY_ENV}, else "
    "$XDG_CONFIG_HOME/fingerprinting/owner_ed25519.pem, ~/.config when unset). The "
    "private half stays outside the work directory: a path inside it is refused; "
    "only the public key is written there (owner.pub).",
)


def main(argv):
    cli.check_no_args(argv)
    key_path = signing.owner_key_path(_KEY.value, _WORKDIR.value)  # before any long work
    fp = pipeline.run_extract(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
    path = pipeline.fingerprint_path(_WORKDIR.value)
    print(f"fingerprint: {len(fp)} examples, {path}")
    signed = signing.sign_workdir(path, _WORKDIR.value, key_path)
    if signed:
        print(signing.describe(signed))


if __name__ == "__main__":
    cli.run(main)
