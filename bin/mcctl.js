#!/usr/bin/env node
import "../dist/client/mcctl.js";
