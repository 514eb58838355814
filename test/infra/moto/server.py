"""moto's server, with Secrets Manager patched to behave as AWS does where moto 5.2.5 does not.

Run with the moto venv's Python, with moto_server's arguments:

    $CNPG_ROTATOR_CACHE/moto-venv/bin/python test/infra/moto/server.py -H 127.0.0.1 -p PORT

The patches are applied to the imported classes when the server starts, so the installed package
stays as pip made it. They are written against moto 5.2.5's code and refuse to run on another
version (setup-moto.sh pins it). What each one fixes, per the Secrets Manager API reference:

1. PutSecretValue / UpdateSecret with a ClientRequestToken already used for a version holding a
   different value fails with ResourceExistsException ("you can't modify a secret version"), whatever
   labels that version has. moto skips the check when the version is labelled AWSPENDING and
   overwrites that version's value. The same value again is a no-op, as on AWS.
2. A staging label is on at most one version. UpdateSecretVersionStage refuses to attach a label
   that another version holds unless RemoveFromVersionId names that version (moto checks this only
   for AWSCURRENT and would put any other label on two versions).
3. Moving AWSCURRENT with UpdateSecretVersionStage makes that version the one GetSecretValue returns
   without a VersionId or VersionStage; moto keeps returning the old one, and a later PutSecretValue
   then labels its stale "default" version AWSPREVIOUS while the promoted version keeps AWSCURRENT:
   AWSCURRENT on two (or three) versions.
4. A new AWSCURRENT version (PutSecretValue, UpdateSecret, CreateSecret) takes the label from the
   version that holds it, found by its labels; that version gets AWSPREVIOUS and keeps its other
   labels, and AWSPREVIOUS leaves every other version. moto replaces all labels of its "default"
   version with AWSPREVIOUS (dropping e.g. AWSPENDING) and never looks at which version holds
   AWSCURRENT. Other labels the new version is given leave the version that had them (moto leaves
   them there when AWSCURRENT is among the labels).
"""

import sys

import moto
from moto.secretsmanager.exceptions import InvalidParameterException, ResourceExistsException
from moto.secretsmanager.models import FakeSecret, ReplicaSecret, SecretsManagerBackend

PINNED = "5.2.5"
CURRENT, PREVIOUS = "AWSCURRENT", "AWSPREVIOUS"


def check_with_existing_secrets_and_versions(
    self, secret_name, client_request_token, secret_string, secret_binary, on_create=False
):
    """1: a token names one value for good (moto 5.2.5's version, without its AWSPENDING exception)."""
    if secret_name not in self.secrets:
        return None
    existing = self.secrets[secret_name]
    if isinstance(existing, ReplicaSecret):
        return original_check(self, secret_name, client_request_token, secret_string, secret_binary, on_create)
    if not client_request_token:
        raise ResourceExistsException("A resource with the ID you requested already exists.")
    version = existing.versions.get(client_request_token)
    if version is not None:
        if version.get("secret_string") == secret_string and version.get("secret_binary") == secret_binary:
            return existing
        raise ResourceExistsException(
            f"You can't use ClientRequestToken {client_request_token} because that value is already in use "
            f"for a version of secret {existing.arn}."
        )
    if on_create:
        raise ResourceExistsException(f"The operation failed because the secret {secret_name} already exists.")
    return None


def reset_default_version(self, secret_version, version_id):
    """4: AWSCURRENT moves from the version holding it, which becomes AWSPREVIOUS; every other label
    the new version carries leaves the version that had it."""
    holders = [v for v, data in self.versions.items() if v != version_id and CURRENT in data["version_stages"]]
    moving = {PREVIOUS, *secret_version["version_stages"]} - {CURRENT}
    for v, data in self.versions.items():
        if v != version_id:
            data["version_stages"][:] = [label for label in data["version_stages"] if label not in moving]
    for v in holders:
        stages = self.versions[v]["version_stages"]
        stages.remove(CURRENT)
        stages.append(PREVIOUS)
    self.versions[version_id] = secret_version
    self.default_version_id = version_id


def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):
    """2 and 3, then moto's own move (which also moves AWSPREVIOUS when AWSCURRENT moves)."""
    secret = self.secrets.get(secret_id)
    if secret is not None and move_to_version_id and move_to_version_id in secret.versions:
        holder = next(
            (v for v, data in secret.versions.items() if version_stage in data["version_stages"]),
            None,
        )
        if holder is not None and holder != move_to_version_id and holder != remove_from_version_id:
            raise InvalidParameterException(
                f"The parameter RemoveFromVersionId can't be empty. Staging label {version_stage} is currently "
                f"attached to version {holder}, so you must explicitly reference that version in RemoveFromVersionId."
            )
    result = original_update_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
    if version_stage == CURRENT and move_to_version_id:
        secret.default_version_id = move_to_version_id
    return result


def main():
    if moto.__version__ != PINNED:
        sys.exit(
            f"test/infra/moto/server.py: written against moto {PINNED}, found {moto.__version__}; "
            "re-read moto's secretsmanager/models.py and update the patches (and setup-moto.sh's pin)"
        )
    SecretsManagerBackend._check_with_existing_secrets_and_versions = check_with_existing_secrets_and_versions
    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage
    FakeSecret.reset_default_version = reset_default_version
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


original_check = SecretsManagerBackend._check_with_existing_secrets_and_versions
original_update_stage = SecretsManagerBackend.update_secret_version_stage

if __name__ == "__main__":
    main()
