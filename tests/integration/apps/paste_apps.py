"""Apps for test_paste.py: PasteDeploy factories."""

import json


def make_app(global_conf, **local_conf):
    def app(environ, start_response):
        body = json.dumps({"greeting": local_conf.get("greeting"),
                           "global": global_conf.get("who"),
                           "here": global_conf.get("here")}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app
