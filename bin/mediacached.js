#!/usr/bin/env -S node --max-semi-space-size=4
// Memory flag: the daemon allocates briskly per download; a small young
// generation (--max-semi-space-size=4) keeps that garbage from piling up
// without capping the heap (a 1,000,000-record index needs several hundred
// MiB). A slower-growing old generation (--optimize-for-size, or any fixed
// --heap-growing-percent) lowered the peak of a 10,000-URL batch by about a
// third but cost a third more CPU per download (major collections), so it is
// not used (bench/README.md has the figures). The flag must be on node's
// command line (v8.setFlagsFromString is too late), so npm start, the
// systemd units and the launchd plist pass the same one.
import '../dist/daemon/main.js';
