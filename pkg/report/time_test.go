package report

import "time"

var fixedTime = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
