"""The gateway's few browser-facing pages: the credential form and the result pages of credential flows.

Everything else the gateway serves is JSON for programs; these pages are for a person who followed a
link from a tool error, so they are server-rendered HTML that works without JavaScript.
"""
