package cronjob

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// schedule yields the activation times of a cron schedule.
type schedule interface {
	// Next returns the first activation strictly after t, in t's location,
	// or the zero time if there is none within five years.
	Next(t time.Time) time.Time
}

// fieldBounds are the accepted values of one cron field.
type fieldBounds struct {
	name     string
	min, max uint
	names    map[string]uint
}

var (
	minutes = fieldBounds{name: "minute", min: 0, max: 59}
	hours   = fieldBounds{name: "hour", min: 0, max: 23}
	doms    = fieldBounds{name: "day of month", min: 1, max: 31}
	months  = fieldBounds{name: "month", min: 1, max: 12, names: map[string]uint{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}}
	dows = fieldBounds{name: "day of week", min: 0, max: 6, names: map[string]uint{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	}}
)

// descriptors are the predefined schedules.
var descriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// parseSchedule parses a standard five-field cron schedule (minute hour
// day-of-month month day-of-week: *, ?, numbers, names, ranges, steps and
// lists), a descriptor (@hourly, @daily, ...) or "@every <duration>", with
// the semantics of the cron library Kubernetes uses (robfig/cron v3
// ParseStandard).
func parseSchedule(spec string) (schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty spec string")
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, fmt.Errorf("time zones in the schedule are not supported, use .spec.timeZone")
	}
	if strings.HasPrefix(spec, "@") {
		if rest, ok := strings.CutPrefix(spec, "@every "); ok {
			d, err := time.ParseDuration(strings.TrimSpace(rest))
			if err != nil {
				return nil, fmt.Errorf("failed to parse duration %s: %w", spec, err)
			}
			return newEvery(d), nil
		}
		expanded, ok := descriptors[strings.ToLower(spec)]
		if !ok {
			return nil, fmt.Errorf("unrecognized descriptor: %s", spec)
		}
		spec = expanded
	}
	fields := strings.Fields(spec)
	if len(fields) != 5 {
		return nil, fmt.Errorf("expected exactly 5 fields, found %d: %s", len(fields), spec)
	}
	var s cronSchedule
	var err error
	for i, f := range []struct {
		bits   *uint64
		star   *bool
		bounds fieldBounds
	}{
		{&s.minute, nil, minutes}, {&s.hour, nil, hours}, {&s.dom, &s.domStar, doms},
		{&s.month, nil, months}, {&s.dow, &s.dowStar, dows},
	} {
		var star bool
		if *f.bits, star, err = parseField(fields[i], f.bounds); err != nil {
			return nil, err
		}
		if f.star != nil {
			*f.star = star
		}
	}
	return &s, nil
}

// parseField parses one comma-separated field into a bit set; star
// reports an unrestricted "*" or "?" entry (without a step).
func parseField(field string, b fieldBounds) (uint64, bool, error) {
	var set uint64
	star := false
	for expr := range strings.SplitSeq(field, ",") {
		bitsOf, isStar, err := parseRange(expr, b)
		if err != nil {
			return 0, false, err
		}
		set |= bitsOf
		star = star || isStar
	}
	return set, star, nil
}

// parseRange parses "*", "?", "N", "N-M", each optionally with "/step";
// "N/step" means "N-max/step".
func parseRange(expr string, b fieldBounds) (uint64, bool, error) {
	rangePart, stepPart, hasStep := strings.Cut(expr, "/")
	lowPart, highPart, hasHigh := strings.Cut(rangePart, "-")
	var start, end uint
	star := false
	if lowPart == "*" || lowPart == "?" {
		if hasHigh {
			return 0, false, fmt.Errorf("invalid range %q in %s field", expr, b.name)
		}
		start, end, star = b.min, b.max, true
	} else {
		var err error
		if start, err = parseValue(lowPart, b); err != nil {
			return 0, false, err
		}
		end = start
		if hasHigh {
			if end, err = parseValue(highPart, b); err != nil {
				return 0, false, err
			}
		}
	}
	step := uint(1)
	if hasStep {
		n, err := strconv.ParseUint(stepPart, 10, 32)
		if err != nil || n == 0 {
			return 0, false, fmt.Errorf("invalid step %q in %s field", stepPart, b.name)
		}
		step = uint(n)
		if !hasHigh && !star {
			end = b.max
		}
		if step > 1 {
			star = false
		}
	}
	switch {
	case start < b.min:
		return 0, false, fmt.Errorf("beginning of range (%d) below minimum (%d): %s", start, b.min, expr)
	case end > b.max:
		return 0, false, fmt.Errorf("end of range (%d) above maximum (%d): %s", end, b.max, expr)
	case start > end:
		return 0, false, fmt.Errorf("beginning of range (%d) beyond end of range (%d): %s", start, end, expr)
	}
	var set uint64
	for v := start; v <= end; v += step {
		set |= 1 << v
	}
	return set, star, nil
}

func parseValue(s string, b fieldBounds) (uint, error) {
	if v, ok := b.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("failed to parse int from %s in %s field", s, b.name)
	}
	return uint(n), nil
}

// cronSchedule is a parsed five-field schedule: one bit per allowed value.
type cronSchedule struct {
	minute, hour, dom, month, dow uint64
	// domStar/dowStar: the field was "*" or "?". When both day fields are
	// restricted, a day matching either one matches (cron's OR rule).
	domStar, dowStar bool
}

// Next implements schedule by walking month, day, hour and minute, as the
// cron library does, so daylight-saving changes behave the same.
func (s *cronSchedule) Next(t time.Time) time.Time {
	loc := t.Location()
	// Start at the next whole minute.
	t = t.Add(time.Minute - time.Duration(t.Second())*time.Second - time.Duration(t.Nanosecond()))
	yearLimit := t.Year() + 5
	added := false // whether a field was advanced (lower fields reset)

	// Each loop that runs past its field's end wraps around to re-check the
	// higher fields from the top.
next:
	for t.Year() <= yearLimit {
		for s.month&(1<<uint(t.Month())) == 0 {
			if !added {
				added = true
				t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
			}
			t = t.AddDate(0, 1, 0)
			if t.Month() == time.January {
				continue next
			}
		}
		for !s.dayMatches(t) {
			if !added {
				added = true
				t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
			}
			t = t.AddDate(0, 0, 1)
			// Midnight may not exist (DST): snap to the day's start.
			if h := t.Hour(); h != 0 {
				if h > 12 {
					t = t.Add(time.Duration(24-h) * time.Hour)
				} else {
					t = t.Add(-time.Duration(h) * time.Hour)
				}
			}
			if t.Day() == 1 {
				continue next
			}
		}
		for s.hour&(1<<uint(t.Hour())) == 0 {
			if !added {
				added = true
				t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, loc)
			}
			t = t.Add(time.Hour)
			if t.Hour() == 0 {
				continue next
			}
		}
		for s.minute&(1<<uint(t.Minute())) == 0 {
			if !added {
				added = true
				t = t.Truncate(time.Minute)
			}
			t = t.Add(time.Minute)
			if t.Minute() == 0 {
				continue next
			}
		}
		return t
	}
	return time.Time{}
}

func (s *cronSchedule) dayMatches(t time.Time) bool {
	domMatch := s.dom&(1<<uint(t.Day())) != 0
	dowMatch := s.dow&(1<<uint(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return domMatch && dowMatch
	}
	return domMatch || dowMatch
}

// everySchedule is "@every <duration>": a constant delay, whole seconds,
// at least one second.
type everySchedule struct{ delay time.Duration }

func newEvery(d time.Duration) everySchedule {
	if d < time.Second {
		d = time.Second
	}
	return everySchedule{delay: d - d%time.Second}
}

// Next implements schedule.
func (e everySchedule) Next(t time.Time) time.Time {
	return t.Add(e.delay - time.Duration(t.Nanosecond()))
}
