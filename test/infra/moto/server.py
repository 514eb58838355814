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

And one for SQS's speed, not its behaviour (the fleet bench's 10,000 messages):

5. ReceiveMessage checks each message it returns against the queue's MessageRetentionPeriod by
   computing every queue attribute three times — each a scan of all messages, approximate counts
   included — so a receive from a queue of 10,000 took about a second per message. The check reads
   the one attribute instead; the answer is the same.
6. SendMessage reads ContentBasedDeduplication by computing every queue attribute (the same scans)
   per message, so sending N messages took time in N squared (10,000: 29 minutes). While a thread
   sends, that thread's queue attributes are the one it reads; every other caller
   (GetQueueAttributes included) gets them all, as before.
"""

import sys
import threading

import moto
from moto.core.utils import unix_time
from moto.secretsmanager.exceptions import InvalidParameterException, ResourceExistsException
from moto.secretsmanager.models import FakeSecret, ReplicaSecret, SecretsManagerBackend
from moto.sqs.models import Queue, SQSBackend

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


def is_message_valid_based_on_retention_period(self, queue_name, message):
    """5: moto 5.2.5's check, reading MessageRetentionPeriod alone."""
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > unix_time()


_sending = threading.local()
original_attributes = Queue.attributes.fget
original_send_message = SQSBackend.send_message


def attributes(self):
    """6: what send_message reads, without the scans, while this thread sends."""
    if getattr(_sending, "active", False):
        value = self.content_based_deduplication
        return {"ContentBasedDeduplication": "true" if value is True or value == "true" else "false"}
    return original_attributes(self)


def send_message(self, *args, **kwargs):
    _sending.active = True
    try:
        return original_send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


def main():
    if moto.__version__ != PINNED:
        sys.exit(
            f"test/infra/moto/server.py: written against moto {PINNED}, found {moto.__version__}; "
            "re-read moto's secretsmanager/models.py and update the patches (and setup-moto.sh's pin)"
        )
    SecretsManagerBackend._check_with_existing_secrets_and_versions = check_with_existing_secrets_and_versions
    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage
    FakeSecret.reset_default_version = reset_default_version
    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    Queue.attributes = property(attributes)
    SQSBackend.send_message = send_message
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


original_check = SecretsManagerBackend._check_with_existing_secrets_and_versions
original_update_stage = SecretsManagerBackend.update_secret_version_stage

if __name__ == "__main__":
    main()
