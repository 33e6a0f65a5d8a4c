#!/usr/bin/env -S node --max-semi-space-size=4 --optimize-for-size
// Memory flags, measured on a 10,000-URL inbox batch (test/daemon-load.test.ts):
// the daemon's live data is small but it allocates briskly per download, and
// V8's defaults let the heap grow far past it (peak RSS 222-250 MiB). A small
// young generation (--max-semi-space-size=4) and a slower-growing heap
// (--optimize-for-size) brought the peak to about 140 MiB at the same speed,
// without capping the heap (a 1,000,000-record index needs several hundred MiB).
// They must be on node's command line (v8.setFlagsFromString is too late), so
// npm start, the systemd units and the launchd plist pass the same flags.
import '../dist/daemon/main.js';
