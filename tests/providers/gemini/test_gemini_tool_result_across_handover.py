"""A function result given after goAway goes to the connection that sends it, in the form
that connection understands: a call made on the old connection is unknown to the resumed
one, so its result goes as ``clientContent`` (functionCall + functionResponse), never as a
``toolResponse`` the service would drop (the reply then never came: a hang seen under load
in the random-fault episodes)."""

from __future__ import annotations

import asyncio

from gemini_provider_helpers import Recorder, is_, make_provider
from voiceengine.providers.types import EventType
from voiceengine.testing import FakeGeminiLiveServer, Fault, FaultKind, Trigger


async def test_a_result_for_a_call_made_before_the_handover_is_answered() -> None:
    async with FakeGeminiLiveServer(speed=50.0) as server:
        provider = make_provider(server, connect_timeout_s=3.0)
        rec = Recorder(provider)
        await provider.connect()
        try:
            server.script_tool_call("lookup", {"step": 1})
            # goAway as the user's turn arrives: the tool call follows it on the old connection
            server.inject(Fault(kind=FaultKind.SESSION_EXPIRED, duration_s=0.1, trigger=Trigger.ON_CLIENT_EVENT,
                                event_type="clientContent", label="go_away"))
            await provider.send_text("look it up")
            call = await rec.wait(is_(EventType.FUNCTION_CALL), timeout=10)
            # answered at once, while the handover that goAway started is under way: the
            # result waits for the new connection and goes out on it
            after = len(rec.events)
            await provider.send_function_result(call.data.call_id, {"ok": True})
            done = await rec.wait(is_(EventType.RESPONSE_DONE), since=after, timeout=10)
            assert done.data.status == "completed"
            resumed = server.sessions[-1]
            assert not any("toolResponse" in frame for frame in resumed.received)
            assert any("clientContent" in frame for frame in resumed.received)
        finally:
            await provider.disconnect()
        await asyncio.sleep(0)
