// The fleet's logs: every device's lines, filtered, followed live.

import { startPage } from "./common.js";
import { setupLogView } from "./logview.js";

startPage();
setupLogView(document.getElementById("logs"));
