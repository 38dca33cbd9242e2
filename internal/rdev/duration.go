package rdev

import (
	"strconv"
	"strings"
	"time"
)

// ParseExpiresIn parses an expiry such as "90m", "24h" or "7d". A "d" suffix
// takes a whole number of days from 1 to maxDays; anything else must be a
// positive Go duration. Longer than maxDays is refused too. field names the
// request field in the returned *InvalidError.
func ParseExpiresIn(field, s string, maxDays int) (time.Duration, error) {
	invalid := Invalid(field, "%s must be a valid duration (e.g., 24h, 7d)", field)
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || strings.HasPrefix(n, "+") {
			return 0, invalid
		}
		if days > maxDays {
			return 0, Invalid(field, "%s cannot exceed %d days", field, maxDays)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, invalid
		}
	}
	if d > time.Duration(maxDays)*24*time.Hour {
		return 0, Invalid(field, "%s cannot exceed %d days", field, maxDays)
	}
	return d, nil
}
