"""Twilio and OVHcloud SMS doubles on the replay server, with their real request and
answer shapes: Twilio's form-encoded Messages.json with Basic auth, its Message
resource and error objects (``{"code", "message", "more_info", "status"}``); OVH's
signed ``/1.0/sms/{service}/jobs`` (the signature recomputed and checked, the
timestamp against ``/1.0/auth/time``) and its error bodies."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from framework.testing import RecordedRequest, ReplayServer, Reply
from providers.sms import ovh_signature

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "twilio-auth-token-5678"
TWILIO_NUMBER = "+15005550006"
INVALID_NUMBER = "+15005550001"  # Twilio's magic test number for an invalid To (21211)

OVH_APP_KEY = "ovhAppKey123"
OVH_APP_SECRET = "ovhAppSecret456"
OVH_CONSUMER_KEY = "ovhConsumerKey789"
OVH_SERVICE = "sms-ab12345-1"
OVH_INVALID = "+33699999999"

TWILIO_ENV = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
OVH_ENV = {"OVH_APPLICATION_KEY": OVH_APP_KEY, "OVH_APPLICATION_SECRET": OVH_APP_SECRET,
           "OVH_CONSUMER_KEY": OVH_CONSUMER_KEY}


def _twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message,
                          "more_info": f"https://www.twilio.com/docs/errors/{code}",
                          "status": status})


class _Faults:
    def __init__(self) -> None:
        self.rate_limited = 0
        self.failing = 0
        self.lock = threading.Lock()

    def take(self, limited: Reply, failing: Reply) -> Reply | None:
        with self.lock:
            if self.rate_limited:
                self.rate_limited -= 1
                return limited
            if self.failing:
                self.failing -= 1
                return failing
        return None


class TwilioDouble(_Faults):
    def __init__(self, server: ReplayServer) -> None:
        super().__init__()
        self.api_base = server.url
        self.server = server
        self.sent: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        server.route(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", self._create)

    def _create(self, request: RecordedRequest) -> Reply:
        fault = self.take(Reply(429, {"code": 20429, "message": "Too Many Requests",
                                      "more_info": "https://www.twilio.com/docs/errors/20429",
                                      "status": 429}, headers={"Retry-After": "0"}),
                          _twilio_error(503, 20503, "Service unavailable"))
        if fault is not None:
            return fault
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _twilio_error(401, 20003, "Authenticate")
        form = dict(parse_qsl(request.body.decode()))
        if form.get("To") == INVALID_NUMBER:
            return _twilio_error(400, 21211,
                                 f"The 'To' number {form['To']} is not a valid phone number.")
        if "From" in form and form["From"] != TWILIO_NUMBER:
            return _twilio_error(400, 21606, f"The From phone number {form['From']} is not a "
                                 "valid, SMS-capable inbound phone number or short code for "
                                 "your account.")
        with self.lock:
            self.sent.append(form)
            sid = f"SM{next(self._ids):032x}"
        return Reply(201, {"sid": sid, "account_sid": ACCOUNT_SID, "to": form["To"],
                           "from": form.get("From"), "body": form["Body"], "status": "queued",
                           "num_segments": "1", "direction": "outbound-api",
                           "error_code": None, "error_message": None,
                           "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"})


class OvhDouble(_Faults):
    def __init__(self, server: ReplayServer, *, clock_offset_s: int = 0) -> None:
        super().__init__()
        self.api_base = server.url
        self.server = server
        self.jobs: list[dict[str, Any]] = []
        self.clock_offset_s = clock_offset_s
        self._ids = itertools.count(1000)
        server.route("/1.0/auth/time", self._time)
        server.route(f"/1.0/sms/{OVH_SERVICE}/jobs", self._job)

    def _now(self) -> int:
        return int(time.time()) + self.clock_offset_s

    def _time(self, request: RecordedRequest) -> Reply:
        return Reply(body=str(self._now()).encode())

    def _job(self, request: RecordedRequest) -> Reply:
        fault = self.take(Reply(429, {"message": "Too many requests"},
                                headers={"Retry-After": "0"}),
                          Reply(503, {"message": "Service unavailable"}))
        if fault is not None:
            return fault
        headers = request.headers
        if headers.get("x-ovh-application") != OVH_APP_KEY:
            return Reply(403, {"errorCode": "INVALID_KEY", "httpCode": "403 Forbidden",
                               "message": "Invalid application key"})
        timestamp = int(headers.get("x-ovh-timestamp", "0"))
        if abs(timestamp - self._now()) > 5:
            return Reply(400, {"errorCode": "QUERY_TIME_OUT", "httpCode": "400 Bad Request",
                               "message": "Query out of time"})
        url = f"{self.server.url}{request.path}"
        expected = ovh_signature(OVH_APP_SECRET, headers.get("x-ovh-consumer", ""), "POST",
                                 url, request.body, timestamp)
        if headers.get("x-ovh-signature") != expected:
            return Reply(400, {"errorCode": "INVALID_SIGNATURE", "httpCode": "400 Bad Request",
                               "message": "Invalid signature"})
        body = orjson.loads(request.body)
        with self.lock:
            self.jobs.append(body)
            valid = [r for r in body["receivers"] if r != OVH_INVALID]
            ids = [next(self._ids) for _ in valid]
        return Reply(200, {"totalCreditsRemoved": len(valid), "ids": ids,
                           "validReceivers": valid,
                           "invalidReceivers": [r for r in body["receivers"] if r == OVH_INVALID],
                           "tag": ""})
