"""Mock Bedrock and Vertex endpoints for Claude that check the real authentication of each cloud.

`MockBedrock` serves InvokeModel / InvokeModelWithResponseStream and verifies every request's
SigV4 signature with botocore against the known test credentials (a wrong key, a changed body
or a stale signature gets Bedrock's 403); streams are framed as AWS event streams (prelude,
headers, CRCs) carrying base64 Anthropic events, as Bedrock sends them.

`MockVertex` serves `rawPredict` / `streamRawPredict` and an OAuth token endpoint: the gateway's
google-auth must present a JWT assertion signed with the service account's private key (checked
against its public key, issuer, audience and scope) to get an access token, and every call must
carry that token. `service_account_file` writes the JSON a Google console would give you, with
`token_uri` pointing here.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from examples.servers.llm_provider import MockProvider, Recorded

AWS_ACCESS_KEY = "AKIAMCPGWTESTKEY0001"
AWS_SECRET_KEY = "mcpgw/test/secret/key/not/a/real/one000"
AWS_REGION = "us-east-1"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""What google-auth puts in a service account's assertion as `aud`, whatever the `token_uri`."""


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    encoded = b"".join(
        len(name).to_bytes(1, "big") + name.encode() + b"\x07" + len(value).to_bytes(2, "big") + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    message = prelude + binascii.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return message + binascii.crc32(message).to_bytes(4, "big")


class MockBedrock(MockProvider):
    def __init__(self) -> None:
        super().__init__(key="")
        self.signature_failures: list[str] = []
        self.app.router.routes.extend(
            [
                Route("/model/{model}/invoke", self.invoke, methods=["POST"]),
                Route("/model/{model}/invoke-with-response-stream", self.invoke_stream, methods=["POST"]),
            ]
        )

    async def _check_signature(self, request: Request, body: bytes) -> str | None:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return "missing SigV4 Authorization"
        fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","))
        if not fields.get("Credential", "").startswith(f"{AWS_ACCESS_KEY}/"):
            return "unknown access key"
        signed = fields["SignedHeaders"].split(";")
        raw_path = request.scope["raw_path"].decode()
        url = f"http://{request.headers['host']}{raw_path}"
        replay = AWSRequest(method="POST", url=url, data=body, headers={h: request.headers[h] for h in signed})
        replay.context["timestamp"] = request.headers["x-amz-date"]
        signer = SigV4Auth(Credentials(AWS_ACCESS_KEY, AWS_SECRET_KEY), "bedrock", AWS_REGION)
        canonical = signer.canonical_request(replay)
        expected = signer.signature(signer.string_to_sign(replay, canonical), replay)
        if expected != fields.get("Signature"):
            return "signature does not match"
        return None

    async def _bedrock_body(self, request: Request) -> tuple[Any, Response | None]:
        raw = await request.body()
        problem = await self._check_signature(request, raw)
        body = json.loads(raw) if raw else {}
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(_recorded(request, headers, body))
        if problem is not None:
            self.signature_failures.append(problem)
            return body, JSONResponse(
                {"message": f"The request signature we calculated does not match: {problem}"}, 403
            )
        if body.get("anthropic_version") != "bedrock-2023-05-31" or "model" in body:
            return body, JSONResponse({"message": "Malformed input request: anthropic_version / model"}, 400)
        return body, None

    async def invoke(self, request: Request) -> Response:
        _, refused = await self._bedrock_body(request)
        if refused is not None:
            return refused
        turn = self._next()
        if turn.status != 200:
            return JSONResponse({"message": f"mock error {turn.status}"}, status_code=turn.status)
        answer = {
            "id": "msg_bedrock",
            "type": "message",
            "role": "assistant",
            "model": request.path_params["model"],
            "content": [{"type": "text", "text": turn.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 4},
        }
        return JSONResponse(answer)

    async def invoke_stream(self, request: Request) -> Response:
        _, refused = await self._bedrock_body(request)
        if refused is not None:
            return refused
        turn = self._next()
        events = self._anthropic_events(turn, "msg_bedrock", request.path_params["model"])

        async def frames() -> Any:
            blob = b""
            for _, data in events:
                payload = json.dumps({"bytes": base64.b64encode(json.dumps(data).encode()).decode()}).encode()
                headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
                blob += event_frame(headers, payload)
            # Frames cut at arbitrary places, as they arrive over a network.
            for i in range(0, len(blob), 13):
                yield blob[i : i + 13]

        return StreamingResponse(frames(), media_type="application/vnd.amazon.eventstream")


def _recorded(request: Request, headers: dict[str, str], body: Any) -> Recorded:
    return Recorded(request.url.path, headers, body)


class MockVertex(MockProvider):
    """Vertex AI's Claude endpoints plus Google's token endpoint, for one generated service account."""

    def __init__(self) -> None:
        super().__init__(key="")
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "mcpgw-test@mcpgw-test-project.iam.gserviceaccount.com"
        self.issued: set[str] = set()
        self.token_requests = 0
        self.base_url = ""
        self.app.router.routes.extend(
            [
                Route("/token", self.token, methods=["POST"]),
                Route(
                    "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model_action}",
                    self.predict,
                    methods=["POST"],
                ),
                Route(
                    "/v1/projects/{project}/locations/{location}/publishers/google/models/{model_action}",
                    self.predict_gemini,
                    methods=["POST"],
                ),
            ]
        )

    def service_account_file(self, folder: Path) -> Path:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path = folder / "service-account.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "mcpgw-test-project",
                    "private_key_id": "test-key-1",
                    "private_key": pem,
                    "client_email": self.client_email,
                    "client_id": "1234567890",
                    "token_uri": f"{self.base_url}/token",
                }
            )
        )
        return path

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            token = jwt.decode(str(form.get("assertion", "")), RSAKey.import_key(public))
        except (JoseError, ValueError) as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": f"bad assertion: {exc}"}, 400)
        claims = token.claims
        now = time.time()
        if (
            claims.get("iss") != self.client_email
            or claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, f"{self.base_url}/token")
            or "https://www.googleapis.com/auth/cloud-platform" not in str(claims.get("scope", ""))
            or not claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0) + 300
        ):
            return JSONResponse({"error": "invalid_grant", "error_description": f"bad claims {claims}"}, 400)
        access = f"ya29.test-{self.token_requests}"
        self.issued.add(access)
        return JSONResponse({"access_token": access, "expires_in": 3600, "token_type": "Bearer"})

    async def predict_gemini(self, request: Request) -> Response:
        body = json.loads(await request.body())
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(_recorded(request, headers, body))
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.issued:
            return _google_error(401, "invalid credentials", "UNAUTHENTICATED")
        return self.gemini_answer(request.path_params["model_action"], request.query_params.get("alt"))

    async def predict(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(_recorded(request, headers, body))
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.issued:
            return JSONResponse(
                {"error": {"code": 401, "message": "invalid credentials", "status": "UNAUTHENTICATED"}}, 401
            )
        model, _, action = request.path_params["model_action"].partition(":")
        if body.get("anthropic_version") != "vertex-2023-10-16" or "model" in body:
            return JSONResponse(
                {"error": {"code": 400, "message": "anthropic_version / model", "status": "INVALID_ARGUMENT"}}, 400
            )
        turn = self._next()
        if action == "streamRawPredict":
            return StreamingResponse(self._anthropic_stream(turn, "msg_vertex", model), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_vertex",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": turn.text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 8, "output_tokens": 3},
            }
        )


def _google_error(code: int, message: str, status: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, code)
