//! System tests (in `tests/`): the host (its router in-process, or the `infrapilot` binary), the
//! `infrapilot-agent` binary as a separate process, a real Docker engine with nginx, and the
//! peers the tests start (pebble, an SMTP server, an OCSP responder, testssl). Nothing here is
//! a library; this file only gives the package a target.
