#!/usr/bin/env -S node --max-semi-space-size=4
// --max-semi-space-size=4 keeps the young generation small: the daemon's live
// data is small but it allocates briskly per download, and with V8's default
// (16 MiB semi-spaces) a 10,000-URL batch peaked at 230-250 MiB RSS against
// 131-135 MiB with this flag, at the same speed. The flag has to be on node's
// command line (v8.setFlagsFromString is too late), so npm start, the systemd
// units and the launchd plist pass it too.
import '../dist/daemon/main.js';
