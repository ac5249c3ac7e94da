"""Dirty apps of the dirty_example shape: a model server (own __call__,
state kept across calls), a CPU app, and a session app on the stash
(`stashes = [...]`, init() seeding a counter, dict-like table access)."""

import hashlib
import os
import time

from gunicorn.dirty import stash
from gunicorn.dirty.app import DirtyApp


class MLApp(DirtyApp):
    """Keeps "models" (dicts) loaded between calls, as a model server would."""

    def __init__(self):
        self.models = {}
        self.loads = 0
        self.inferences = 0

    def init(self):
        self._load("default")

    def __call__(self, action, *args, **kwargs):
        method = getattr(self, action, None)
        if method is None or action.startswith("_"):
            raise ValueError(f"Unknown action: {action}")
        return method(*args, **kwargs)

    def _load(self, name):
        self.models[name] = {"name": name, "loaded_at": time.time(),
                             "version": "1.0.0", "parameters": 1_000_000}
        self.loads += 1
        return self.models[name]

    def load_model(self, name):
        if name in self.models:
            return {"status": "already_loaded", "model": self.models[name]}
        return {"status": "loaded", "model": self._load(name)}

    def list_models(self):
        return {"models": sorted(self.models), "count": len(self.models),
                "total_loads": self.loads, "total_inferences": self.inferences,
                "pid": os.getpid()}

    def inference(self, model_name, input_data):
        if model_name not in self.models:
            raise ValueError(f"Model not loaded: {model_name}")
        self.inferences += 1
        return {"model": model_name,
                "input_hash": hashlib.md5(str(input_data).encode()).hexdigest()[:8],
                "prediction": f"result_{self.inferences}", "confidence": 0.95}

    def unload_model(self, name):
        if name not in self.models:
            return {"status": "not_found", "name": name}
        del self.models[name]
        return {"status": "unloaded", "name": name}

    def close(self):
        self.models.clear()


class ComputeApp(DirtyApp):
    def __init__(self):
        self.count = 0

    def init(self):
        pass

    def __call__(self, action, *args, **kwargs):
        method = getattr(self, action, None)
        if method is None or action.startswith("_"):
            raise ValueError(f"Unknown action: {action}")
        return method(*args, **kwargs)

    def fibonacci(self, n):
        self.count += 1
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return {"n": n, "result": a, "computation_id": self.count}

    def prime_check(self, n):
        self.count += 1
        prime = n >= 2 and all(n % i for i in range(2, int(n ** 0.5) + 1))
        return {"n": n, "is_prime": prime, "computation_id": self.count}

    def stats(self):
        return {"total_computations": self.count}

    def close(self):
        pass


class SessionApp(DirtyApp):
    """Sessions in the stash: any dirty worker sees what another wrote."""

    stashes = ["sessions", "counters"]

    def init(self):
        if not stash.exists("counters", "requests"):
            stash.put("counters", "requests", 0)

    def login(self, user_id, user_data):
        stash.put("sessions", f"user:{user_id}",
                  {"data": user_data, "logged_in_at": time.time(), "by": os.getpid()})
        self._bump()
        return {"status": "ok", "user_id": user_id}

    def get_session(self, user_id):
        self._bump()
        return stash.get("sessions", f"user:{user_id}")

    def list_sessions(self):
        sessions = stash.table("sessions")
        return {"keys": sorted(stash.keys("sessions", pattern="user:*")),
                "names": sorted(sessions[k]["data"]["name"] for k in sessions),
                "count": len(sessions)}

    def logout(self, user_id):
        return {"deleted": stash.delete("sessions", f"user:{user_id}")}

    def get_stats(self):
        return {"requests": stash.get("counters", "requests", 0),
                "sessions": stash.info("sessions")["size"],
                "tables": sorted(stash.tables())}

    def clear_all(self):
        stash.clear("sessions")
        return {"cleared": True, "left": len(stash.table("sessions"))}

    def _bump(self):
        stash.put("counters", "requests", stash.get("counters", "requests", 0) + 1)

    def close(self):
        pass
