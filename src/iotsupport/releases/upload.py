"""The signature of a release upload: checked from the fields before the file is read.

CI signs as it does for assets (assets/signing.py), with purpose `release` and the
model's code as the name, so a signature uploads those bytes to that model only. An
admin (and so anyone while login is off) may leave the signature out; fields that are
sent are checked all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from iotsupport.assets.service import SIGNED_FIELDS
from iotsupport.assets.service import MissingField
from iotsupport.assets.service import UsedCheck
from iotsupport.assets.service import use_once
from iotsupport.assets.service import verify_unused
from iotsupport.assets.signing import SignedFields
from iotsupport.assets.signing import UploadVerifier
from iotsupport.assets.signing import VerifiedUpload
from iotsupport.assets.store import StagedFile
from iotsupport.assets.upload import FILE_FIELD
from iotsupport.assets.upload import Upload
from iotsupport.errors import InvalidInput
from iotsupport.errors import ServiceUnavailable


class SigningNotConfigured(ServiceUnavailable):
    code = "signing_not_configured"


class ReleaseSignature:
    """One upload's signature checks: `precheck` as the file part begins, `accept` after."""

    def __init__(
        self,
        verifier: UploadVerifier | None,
        *,
        model_code: str,
        admin: bool,
        now: datetime,
        used: UsedCheck | None = None,
        signed_name: str | None = None,
    ) -> None:
        self.verifier = verifier
        self.model_code = model_code
        self.signed_name = model_code if signed_name is None else signed_name
        self.admin = admin
        self.now = now
        self._used = used
        self._verified: VerifiedUpload | None = None

    def precheck(self, fields: Mapping[str, str], _filename: str) -> None:
        """An OnFile callback: every check the signed fields allow, before the file."""
        if fields.get("model", self.model_code) != self.model_code:
            raise InvalidInput(
                "the form's model field names another model than the URL",
                {"model": self.model_code},
            )
        if self.admin and not any(name in fields for name in SIGNED_FIELDS):
            return  # an admin's unsigned upload
        missing = [name for name in SIGNED_FIELDS if name not in fields]
        if missing:
            raise MissingField(
                f"missing form field(s) before the file: {', '.join(missing)}; send "
                "timestamp, sha256 and signature first, then the file part"
                + ("" if self.admin else " (only an admin may upload without a signature)"),
                {"missing": missing},
            )
        if self.verifier is None:
            raise SigningNotConfigured(
                "signed uploads are off: SIGNING_KEY_PATH is not set (an admin may upload "
                "without a signature)"
            )
        signed = SignedFields(
            timestamp=fields["timestamp"],
            name=self.signed_name,
            sha256=fields["sha256"],
            signature=fields["signature"],
        )
        self._verified = verify_unused(self.verifier, signed, self.now, self._used)

    def accept(self, session: Session, upload: Upload) -> tuple[StagedFile, bool]:
        """The staged file and whether it came signed; records the signature as used."""
        if upload.file is None:
            raise MissingField(
                "missing form field: file; send multipart/form-data with the image as a file "
                "part named file",
                {"missing": [FILE_FIELD]},
            )
        late = [name for name in SIGNED_FIELDS if name in upload.fields]
        if self._verified is None:
            if late:  # signed fields after the file: checked too late to stop the upload
                raise MissingField(
                    "send timestamp, sha256 and signature before the file part",
                    {"missing": late},
                )
            return upload.file, False
        self._verified.check_file(upload.file.sha256)
        assert self.verifier is not None
        tolerance = self.verifier.tolerance_seconds
        use_once(session, upload.fields["timestamp"], self._verified, self.now, tolerance)
        return upload.file, True
