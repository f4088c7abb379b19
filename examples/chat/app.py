"""chat: a chat-style model that remembers each conversation with `coldbrew.state`.

Every call names a `session_id`; the model appends the user's message and its own reply to
that session's history (kept for a day, the last 50 turns), so it can answer from what was
said before — in this worker, in another one, or after the server restarted.
"""

import re

import coldbrew

app = coldbrew.App("chat")
HISTORY_TURNS = 50
HISTORY_TTL_S = 86_400.0
_NAME = re.compile(r"\bmy name is (\w+)", re.IGNORECASE)


@app.model(max_workers=2, idle_timeout_s=60, timeout_s=30)
class Chat:
    def predict(self, session_id: str, message: str) -> dict:
        key = f"session:{session_id}"
        history = coldbrew.state.get(key, [])
        reply = self.answer(message, history)
        history = coldbrew.state.append(
            key,
            {"role": "user", "text": message},
            {"role": "assistant", "text": reply},
            max_items=2 * HISTORY_TURNS,
            ttl_s=HISTORY_TTL_S,
        )
        return {"reply": reply, "turn": len(history) // 2, "session_id": session_id}

    def answer(self, message: str, history: list[dict]) -> str:
        said = [turn["text"] for turn in history if turn["role"] == "user"]
        if match := _NAME.search(message):
            return f"Nice to meet you, {match.group(1)}."
        if "my name" in message.lower():
            names = [m.group(1) for text in said if (m := _NAME.search(text))]
            return f"Your name is {names[-1]}." if names else "You have not told me your name."
        if "what did i say" in message.lower():
            return f"You said: {said[-1]!r}." if said else "This is the start of our chat."
        return f"Message {len(said) + 1} of this chat: {message}"
