"""A dirty app of the streaming_chat shape: canned answers streamed word by
word from a generator, a second action delegating with `yield from`."""

import time

from gunicorn.dirty.app import DirtyApp


class ChatApp(DirtyApp):
    def init(self):
        self.responses = {
            "hello": "Hello! I am a pretend assistant living in a dirty worker.",
            "explain": "Dirty workers keep slow state loaded across requests.",
            "default": "I have no canned answer for that, but here are some words.",
        }
        self.delay = 0.002

    def generate(self, prompt):
        words = self._answer(prompt).split()
        for i, word in enumerate(words):
            time.sleep(self.delay)
            yield word + " " if i < len(words) - 1 else word

    def generate_with_thinking(self, prompt):
        yield "[thinking"
        for _ in range(3):
            time.sleep(self.delay)
            yield "."
        yield "]\n\n"
        yield from self.generate(prompt)

    def _answer(self, prompt):
        p = prompt.lower().strip()
        for key, text in self.responses.items():
            if key in p:
                return text
        return self.responses["default"]

    def close(self):
        pass
