// Package cron parses CronJob schedules the way Kubernetes does (with
// robfig/cron v3's ParseStandard) and finds their activation times. The
// API server validates spec.schedule with it and the CronJob controller
// runs jobs by it, so both agree on what a schedule means.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed standard cron schedule: five fields (minute hour
// day-of-month month day-of-week), a descriptor (@yearly, @monthly,
// @weekly, @daily, @hourly, ...) or @every <duration>, with an optional
// CRON_TZ= or TZ= prefix (which CronJob validation rejects in favour of
// spec.timeZone, but which old objects may still carry). The zero value
// never fires.
type Schedule struct {
	// One bit per allowed value of each field; starBit marks a field given
	// as "*" or "?", which changes how day-of-month and day-of-week combine.
	minute, hour, dom, month, dow uint64
	// every is the period of an @every schedule (then the fields are unused).
	every time.Duration
	// loc is the CRON_TZ/TZ location; nil means the location of the time
	// passed to Next.
	loc *time.Location
	// valid distinguishes a parsed schedule from the zero value.
	valid bool
}

const starBit = 1 << 63

type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	cronMinute = cronField{name: "minute", min: 0, max: 59}
	cronHour   = cronField{name: "hour", min: 0, max: 23}
	cronDom    = cronField{name: "day of month", min: 1, max: 31}
	cronMonth  = cronField{name: "month", min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}}
	cronDow = cronField{name: "day of week", min: 0, max: 6, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	}}
)

// cronDescriptors are the named schedules and their five-field meaning.
var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// Parse parses a standard cron specification. Its error texts
// follow robfig/cron, whose messages Kubernetes returns to clients.
func Parse(spec string) (Schedule, error) {
	if len(spec) == 0 {
		return Schedule{}, fmt.Errorf("empty spec string")
	}
	var loc *time.Location
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		i := strings.Index(spec, " ")
		if i < 0 {
			i = len(spec)
		}
		eq := strings.Index(spec, "=")
		name := spec[eq+1 : i]
		l, err := time.LoadLocation(name)
		if err != nil {
			return Schedule{}, fmt.Errorf("provided bad location %s: %w", name, err)
		}
		loc = l
		spec = strings.TrimSpace(spec[i:])
	}
	if strings.HasPrefix(spec, "@") {
		if rest, ok := strings.CutPrefix(spec, "@every "); ok {
			d, err := time.ParseDuration(rest)
			if err != nil {
				return Schedule{}, fmt.Errorf("failed to parse duration %s: %w", spec, err)
			}
			// robfig/cron runs @every schedules on whole seconds, at least one.
			d = max(d-d%time.Second, time.Second)
			return Schedule{every: d, loc: loc, valid: true}, nil
		}
		expanded, ok := cronDescriptors[spec]
		if !ok {
			return Schedule{}, fmt.Errorf("unrecognized descriptor: %s", spec)
		}
		spec = expanded
	}
	fields := strings.Fields(spec)
	if len(fields) != 5 {
		return Schedule{}, fmt.Errorf("expected exactly 5 fields, found %d: %s", len(fields), fields)
	}
	s := Schedule{loc: loc, valid: true}
	for i, f := range []struct {
		bits *uint64
		def  cronField
	}{{&s.minute, cronMinute}, {&s.hour, cronHour}, {&s.dom, cronDom}, {&s.month, cronMonth}, {&s.dow, cronDow}} {
		b, err := parseCronField(fields[i], f.def)
		if err != nil {
			return Schedule{}, err
		}
		*f.bits = b
	}
	return s, nil
}

// parseCronField parses a comma-separated list of ranges: "*", "?", "n",
// "a-b", each optionally followed by "/step" ("n/step" means n through
// the maximum).
func parseCronField(expr string, f cronField) (uint64, error) {
	var out uint64
	for _, part := range strings.Split(expr, ",") {
		b, err := parseCronRange(part, f)
		if err != nil {
			return 0, err
		}
		out |= b
	}
	return out, nil
}

func parseCronRange(expr string, f cronField) (uint64, error) {
	rangePart, stepPart, hasStep := strings.Cut(expr, "/")
	lowPart, highPart, hasHigh := strings.Cut(rangePart, "-")
	var start, end int
	var extra uint64
	if lowPart == "*" || lowPart == "?" {
		if hasHigh {
			return 0, fmt.Errorf("too many hyphens: %s", expr)
		}
		start, end, extra = f.min, f.max, starBit
	} else {
		var err error
		if start, err = parseCronValue(lowPart, f); err != nil {
			return 0, err
		}
		end = start
		if hasHigh {
			if strings.Contains(highPart, "-") {
				return 0, fmt.Errorf("too many hyphens: %s", expr)
			}
			if end, err = parseCronValue(highPart, f); err != nil {
				return 0, err
			}
		}
	}
	step := 1
	if hasStep {
		if strings.Contains(stepPart, "/") {
			return 0, fmt.Errorf("too many slashes: %s", expr)
		}
		n, err := strconv.Atoi(stepPart)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("failed to parse int from %s: %w", stepPart, errNotPositive(err))
		}
		step = n
		if !hasHigh && extra == 0 {
			end = f.max // "n/step" runs from n to the end of the range.
		}
		if step > 1 {
			extra = 0
		}
	}
	switch {
	case start < f.min:
		return 0, fmt.Errorf("beginning of range (%d) below minimum (%d): %s", start, f.min, expr)
	case end > f.max:
		return 0, fmt.Errorf("end of range (%d) above maximum (%d): %s", end, f.max, expr)
	case start > end:
		return 0, fmt.Errorf("beginning of range (%d) beyond end of range (%d): %s", start, end, expr)
	case step == 0:
		return 0, fmt.Errorf("step of range should be a positive number: %s", expr)
	}
	var b uint64
	for v := start; v <= end; v += step {
		b |= 1 << uint(v)
	}
	return b | extra, nil
}

func errNotPositive(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("negative number")
}

func parseCronValue(s string, f cronField) (int, error) {
	if v, ok := f.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("failed to parse int from %s: %w", s, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("negative number (%d) not allowed: %s", n, s)
	}
	return n, nil
}

// Next returns the first activation time strictly after t, in t's location
// (the schedule's own location is used to match the fields). It returns
// the zero time when the schedule cannot fire within five years (e.g.
// "0 0 30 2 *").
func (s Schedule) Next(t time.Time) time.Time {
	if !s.valid {
		return time.Time{}
	}
	if s.every > 0 {
		return t.Add(s.every - time.Duration(t.Nanosecond()))
	}
	orig := t.Location()
	loc := s.loc
	if loc == nil {
		loc = orig
	}
	t = t.In(loc)
	// Start at the next whole minute; zones' offsets are whole minutes, so
	// truncating absolute time is truncating wall time.
	t = t.Add(time.Minute).Truncate(time.Minute)
	yearLimit := t.Year() + 5

wrap:
	for t.Year() <= yearLimit {
		for s.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
			if t.Year() > yearLimit {
				return time.Time{}
			}
		}
		for !s.dayMatches(t) {
			m := t.Month()
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
			if t.Month() != m {
				continue wrap
			}
		}
		for s.hour&(1<<uint(t.Hour())) == 0 {
			d := t.Day()
			t = t.Add(time.Hour - time.Duration(t.Minute())*time.Minute)
			if t.Day() != d {
				// The hour may have moved off midnight across a DST change.
				t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
				continue wrap
			}
		}
		for s.minute&(1<<uint(t.Minute())) == 0 {
			h := t.Hour()
			t = t.Add(time.Minute)
			if t.Hour() != h {
				continue wrap
			}
		}
		return t.In(orig)
	}
	return time.Time{}
}

// Every returns the period of an @every schedule; ok is false for a
// calendar schedule. Activations of an @every schedule are whole periods
// apart, which lets a caller jump ahead without enumerating them.
func (s Schedule) Every() (period time.Duration, ok bool) { return s.every, s.every > 0 }

// dayMatches applies cron's day rule: when either day field is "*" both
// must match, otherwise either may.
func (s Schedule) dayMatches(t time.Time) bool {
	domMatch := s.dom&(1<<uint(t.Day())) != 0
	dowMatch := s.dow&(1<<uint(t.Weekday())) != 0
	if s.dom&starBit != 0 || s.dow&starBit != 0 {
		return domMatch && dowMatch
	}
	return domMatch || dowMatch
}
