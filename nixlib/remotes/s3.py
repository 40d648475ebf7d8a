"""A remote in S3-compatible storage: `s3://bucket/prefix`, through boto3 (the AWS SDK, which every S3 server
is tested against; credentials and endpoint come the usual AWS ways: environment, ~/.aws, instance roles,
`AWS_ENDPOINT_URL`, or `?endpoint=URL&region=R` in the remote URL, as in Nix's s3:// store URLs).

Writes are conditional (`If-None-Match: *`), so on servers that support it (AWS S3 since 2024, SeaweedFS,
MinIO, Ceph RGW) the first writer of a name wins atomically and a later writer's upload is dropped. A server
that ignores the condition gets check-then-put: a race may keep the later of two valid uploads. A stale lease
(expired or garbled) is taken over with `If-Match: ETAG` of the lease read, so of several takers one wins (a server
that ignores If-Match gets a plain replace: they may both build). Uploads are
atomic on S3: a single PUT is visible whole or not at all, and a multipart upload (objects over 64 MiB, sent
in 16 MiB parts so memory stays bounded) is invisible until it is completed and is aborted on any failure.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nixlib import faults
from nixlib.errors import NixWorkflowError
from nixlib.remotes import Progress, RemoteDown, Stream, split_url

PART = int(os.environ.get("NIX_WORKFLOW_S3_PART_SIZE") or 16 << 20)  # S3's minimum part is 5 MiB
SINGLE_PUT_MAX = int(os.environ.get("NIX_WORKFLOW_S3_SINGLE_PUT_MAX") or 64 << 20)
_ABSENT = ("NoSuchKey", "404", "NotFound")
_DENIED = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken")


QUERY = ("endpoint", "region", "profile")


def _query(url: str, query: str) -> dict[str, str]:
    """The URL's settings; an unknown or misspelt one is an error rather than silently unused (an ignored
    `?endpiont=` would send every request to AWS)."""
    parsed = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(parsed) - set(QUERY))
    if unknown:
        raise NixWorkflowError(f"remote {url!r}: unknown setting {unknown[0]!r}; an s3:// URL takes "
                               + ", ".join(f"{k}=" for k in QUERY))
    twice = sorted(k for k, v in parsed.items() if len(v) > 1)
    if twice:  # (the last silently won: two endpoints, one of them never used)
        raise NixWorkflowError(f"remote {url!r}: setting {twice[0]!r} is given {len(parsed[twice[0]])} times; give it "
                               "once")
    found = {k: v[0] for k, v in parsed.items()}
    endpoint = found.get("endpoint")
    if endpoint is not None and split_url(endpoint, url).scheme not in ("http", "https"):
        raise NixWorkflowError(f"remote {url!r}: endpoint {endpoint!r} is not an http:// or https:// URL "
                               "(e.g. ?endpoint=http://minio:9000)")
    return found


class S3Backend:
    guarantee = ("first writer wins atomically where the server honours conditional writes (If-None-Match: *; "
                 "AWS S3, SeaweedFS, MinIO), and one of several hosts taking over a stale lease wins (If-Match: its "
                 "ETag); elsewhere check-then-put (a race may keep the later of two valid uploads, and two takers of a "
                 "lease may both build)")

    def __init__(self, url: str) -> None:
        import boto3
        import botocore.exceptions
        from botocore import UNSIGNED
        from botocore.config import Config

        parts = urlsplit(url)
        if parts.fragment:
            raise NixWorkflowError(f"remote {url!r}: an s3:// URL has no '#' part (settings go after '?': "
                                   "?endpoint=URL&region=R)")
        if not parts.netloc:
            raise NixWorkflowError(f"remote {url!r}: an s3:// URL needs a bucket: s3://BUCKET/PREFIX")
        query = _query(url, parts.query)
        self.url, self.bucket, self.prefix = url, parts.netloc, parts.path.strip("/")
        self._errors = botocore.exceptions
        try:
            session = boto3.session.Session(profile_name=query.get("profile"))
            config = Config(connect_timeout=3, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                            signature_version=None if session.get_credentials() else UNSIGNED)
            self.client: Any = session.client("s3", endpoint_url=query.get("endpoint"), config=config,
                                              region_name=query.get("region") or session.region_name or "us-east-1")
        except (ValueError, botocore.exceptions.BotoCoreError) as e:  # a bad endpoint, region or profile
            raise NixWorkflowError(f"remote {url!r}: {e}") from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _down(self, e: Exception) -> RemoteDown:
        if isinstance(e, self._errors.ClientError):
            err = e.response.get("Error", {})
            hint = ""
            if str(err.get("Code")) in _DENIED:  # (a HEAD's answer has no body: it said only "403: Forbidden")
                hint = ("; check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, or &profile=P "
                        "in the remote URL")
            return RemoteDown(f"{err.get('Code')}: {err.get('Message') or 'request refused'} (bucket {self.bucket})"
                              + hint)
        return RemoteDown(str(e))

    def _absent(self, e: Exception) -> bool:
        return isinstance(e, self._errors.ClientError) and str(e.response.get("Error", {}).get("Code")) in _ABSENT

    def get(self, key: str) -> Stream | None:
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Stream(found["Body"], found.get("ContentLength"), f"s3://{self.bucket}/{self._key(key)}",
                          ident=found.get("ETag"))
        except Exception as e:  # noqa: BLE001 - every botocore failure is either "absent" or "down"
            if self._absent(e):
                return None
            raise self._down(e) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as e:  # noqa: BLE001
            if self._absent(e):
                return False
            raise self._down(e) from None

    def put(self, path: str, key: str, replace: bool = False, progress: Progress | None = None) -> bool:
        if not replace and self.exists(key):
            return False
        cond = {} if replace else {"IfNoneMatch": "*"}
        try:
            size = os.path.getsize(path)
            if size <= SINGLE_PUT_MAX:
                with open(path, "rb") as f:
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=f, **cond)
                if progress is not None:
                    progress(size)
            else:
                self._multipart(path, self._key(key), cond, progress)
            return True
        except Exception as e:  # noqa: BLE001
            if isinstance(e, self._errors.ClientError) and e.response.get("Error", {}).get("Code") in (
                    "PreconditionFailed", "ConditionalRequestConflict"):
                return False  # another writer was first: theirs stands
            raise self._down(e) from None

    def take_over(self, path: str, key: str, stale: tuple[Any, bytes]) -> bool:
        """Replace `key` (a lease found expired or garbled) with the small local file `path` only if it is still the
        object read (`stale`: its ETag, as Stream.ident, and its bytes): a PUT with `If-Match: ETAG`, which the
        server refuses (412) once another taker has replaced it, so of several hosts taking over one stale lease
        one wins. Gone meanwhile (released, or deleted): race for the name with put-if-absent. A server that
        ignores If-Match (or has no ETag) gets a plain replace: two takers may then both build."""
        etag = stale[0]
        if not etag:
            return self.put(path, key, replace=True)
        try:
            with open(path, "rb") as f:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=f, IfMatch=etag)
            return True
        except Exception as e:  # noqa: BLE001
            code = str(e.response.get("Error", {}).get("Code")) if isinstance(e, self._errors.ClientError) else ""
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False  # another taker replaced it first: theirs stands
            if self._absent(e):
                return self.put(path, key)
            if code in ("NotImplemented", "501"):  # (no conditional writes here: as before, a plain replace)
                return self.put(path, key, replace=True)
            raise self._down(e) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:  # noqa: BLE001
            if not self._absent(e):
                raise self._down(e) from None

    def _multipart(self, path: str, key: str, cond: dict[str, str], progress: Progress | None) -> None:
        """Upload in parts, one in memory at a time; nothing is visible until complete, aborted on failure."""
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            parts = []
            with open(path, "rb") as f:
                while chunk := f.read(PART):
                    n = len(parts) + 1
                    etag = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=n,
                                                   Body=chunk)["ETag"]
                    parts.append({"ETag": etag, "PartNumber": n})
                    if progress is not None:
                        progress(len(chunk))
                    faults.point("remote-upload-partial")
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                                  MultipartUpload={"Parts": parts}, **cond)
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except Exception:  # noqa: BLE001, S110 - best effort; the server expires abandoned uploads
                pass
            raise
