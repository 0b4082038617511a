// A page with no script of its own (the missing-page page): what every page has.

import { startPage } from "./common.js";

startPage();
