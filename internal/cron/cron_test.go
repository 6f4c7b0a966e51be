package cron

import (
	"strings"
	"testing"
	"time"
)

func TestParseCronScheduleErrors(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"", "empty spec string"},
		{"* * * *", "expected exactly 5 fields, found 4"},
		{"* * * * * *", "expected exactly 5 fields, found 6"},
		{"60 * * * *", "end of range (60) above maximum (59)"},
		{"* 24 * * *", "end of range (24) above maximum (23)"},
		{"* * 0 * *", "beginning of range (0) below minimum (1)"},
		{"* * * 13 *", "end of range (13) above maximum (12)"},
		{"* * * * 7", "end of range (7) above maximum (6)"},
		{"5-1 * * * *", "beginning of range (5) beyond end of range (1)"},
		{"*/0 * * * *", "step of range should be a positive number"},
		{"a * * * *", "failed to parse int from a"},
		{"1-2-3 * * * *", "too many hyphens"},
		{"*/2/3 * * * *", "too many slashes"},
		{"@fortnightly", "unrecognized descriptor"},
		{"@every 1x", "failed to parse duration"},
		{"TZ=Nowhere/Land * * * * *", "provided bad location Nowhere/Land"},
	}
	for _, tt := range tests {
		if _, err := Parse(tt.spec); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tt.spec, err, tt.want)
		}
	}
}

func TestCronScheduleNext(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		spec, from, want string
	}{
		{"* * * * *", "2024-03-10 10:15:30", "2024-03-10 10:16:00"},
		{"* * * * *", "2024-03-10 10:15:00", "2024-03-10 10:16:00"},
		{"*/15 * * * *", "2024-03-10 10:15:00", "2024-03-10 10:30:00"},
		{"5 * * * *", "2024-03-10 10:15:00", "2024-03-10 11:05:00"},
		{"0 0 * * *", "2024-12-31 23:59:00", "2025-01-01 00:00:00"},
		{"@hourly", "2024-03-10 10:15:00", "2024-03-10 11:00:00"},
		{"@daily", "2024-03-10 10:15:00", "2024-03-11 00:00:00"},
		{"@weekly", "2024-03-10 10:15:00", "2024-03-17 00:00:00"}, // 2024-03-10 is a Sunday
		{"@monthly", "2024-03-10 10:15:00", "2024-04-01 00:00:00"},
		{"@yearly", "2024-03-10 10:15:00", "2025-01-01 00:00:00"},
		{"30 9 * * mon-fri", "2024-03-08 10:00:00", "2024-03-11 09:30:00"}, // Friday after 9:30 → Monday
		{"0 12 * JAN,jul *", "2024-03-10 10:15:00", "2024-07-01 12:00:00"},
		{"0 0 29 2 *", "2023-03-01 00:00:00", "2024-02-29 00:00:00"},
		{"0 0 31 * *", "2024-04-01 00:00:00", "2024-05-31 00:00:00"},
		// Day of month and day of week both restricted: either matches.
		{"0 0 13 * 5", "2024-03-01 12:00:00", "2024-03-08 00:00:00"},
		// "*" in either day field: both must match.
		{"0 0 * * 5", "2024-03-01 12:00:00", "2024-03-08 00:00:00"},
		{"0 0 13 * ?", "2024-03-01 12:00:00", "2024-03-13 00:00:00"},
		{"10-20/5 1 * * *", "2024-03-10 01:12:00", "2024-03-10 01:15:00"},
		{"50/5 * * * *", "2024-03-10 10:56:00", "2024-03-10 11:50:00"},
		{"0 0 30 2 *", "2024-01-01 00:00:00", "0001-01-01 00:00:00"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.spec, err)
			continue
		}
		got := s.Next(utc(tt.from))
		if want := utc(tt.want); !got.Equal(want) {
			t.Errorf("%q.Next(%s) = %s, want %s", tt.spec, tt.from, got, want)
		}
	}
}

func TestCronScheduleLocations(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	// The fields are matched in the schedule's zone; the result is in the
	// caller's.
	s, err := Parse("CRON_TZ=America/New_York 0 9 * * *")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC) // 08:00 in New York (EDT)
	got := s.Next(from)
	if want := time.Date(2024, 6, 1, 9, 0, 0, 0, ny); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Next = %s, want %s in UTC", got, want)
	}
	// Without a prefix the caller's location decides, across a DST change
	// (2024-03-10 02:00 does not exist in New York).
	s, _ = Parse("30 2 * * *")
	got = s.Next(time.Date(2024, 3, 9, 3, 0, 0, 0, ny))
	if got.Before(time.Date(2024, 3, 10, 0, 0, 0, 0, ny)) || got.After(time.Date(2024, 3, 11, 2, 30, 0, 0, ny)) {
		t.Errorf("DST Next = %s", got)
	}
}

func TestCronScheduleEvery(t *testing.T) {
	s, err := Parse("@every 90s")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2024, 1, 1, 0, 0, 0, 500, time.UTC)
	if got, want := s.Next(from), time.Date(2024, 1, 1, 0, 1, 30, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Next = %s, want %s", got, want)
	}
	var zero Schedule
	if !zero.Next(from).IsZero() {
		t.Errorf("zero schedule fired")
	}
}

func TestScheduleActivationSequences(t *testing.T) {
	utc := func(s string) time.Time {
		t, err := time.Parse("2006-01-02 15:04:05", s)
		if err != nil {
			panic(err)
		}
		return t
	}
	for _, tc := range []struct {
		spec, from string
		want       []string
	}{
		{"* * * * *", "2025-05-01 12:00:30", []string{"2025-05-01 12:01:00", "2025-05-01 12:02:00"}},
		{"*/15 * * * *", "2025-05-01 12:00:00", []string{"2025-05-01 12:15:00", "2025-05-01 12:30:00", "2025-05-01 12:45:00", "2025-05-01 13:00:00"}},
		{"5-10/5,30 * * * *", "2025-05-01 12:00:00", []string{"2025-05-01 12:05:00", "2025-05-01 12:10:00", "2025-05-01 12:30:00", "2025-05-01 13:05:00"}},
		{"10/20 3 * * *", "2025-05-01 12:00:00", []string{"2025-05-02 03:10:00", "2025-05-02 03:30:00", "2025-05-02 03:50:00", "2025-05-03 03:10:00"}},
		{"0 0 * * MON-wed", "2025-05-01 12:00:00", []string{"2025-05-05 00:00:00", "2025-05-06 00:00:00", "2025-05-07 00:00:00", "2025-05-12 00:00:00"}},
		{"0 12 1 jan,JUL ?", "2025-05-01 12:00:00", []string{"2025-07-01 12:00:00", "2026-01-01 12:00:00"}},
		// Both day fields restricted: either matches (1st of month or Sunday).
		{"0 0 1 * 0", "2025-05-01 12:00:00", []string{"2025-05-04 00:00:00", "2025-05-11 00:00:00", "2025-05-18 00:00:00", "2025-05-25 00:00:00", "2025-06-01 00:00:00"}},
		// A stepped star restricts the field: either day field matches.
		{"0 0 */10 * 1", "2025-05-01 12:00:00", []string{"2025-05-05 00:00:00", "2025-05-11 00:00:00", "2025-05-12 00:00:00"}},
		{"0 0 */10 * *", "2025-05-01 12:00:00", []string{"2025-05-11 00:00:00", "2025-05-21 00:00:00", "2025-05-31 00:00:00", "2025-06-01 00:00:00"}},
		{"0 0 29 2 *", "2025-05-01 12:00:00", []string{"2028-02-29 00:00:00"}},
		{"@hourly", "2025-05-01 12:00:00", []string{"2025-05-01 13:00:00"}},
		{"@daily", "2025-05-01 12:00:00", []string{"2025-05-02 00:00:00"}},
		{"@midnight", "2025-05-01 12:00:00", []string{"2025-05-02 00:00:00"}},
		{"@weekly", "2025-05-01 12:00:00", []string{"2025-05-04 00:00:00"}},
		{"@monthly", "2025-05-01 12:00:00", []string{"2025-06-01 00:00:00"}},
		{"@yearly", "2025-05-01 12:00:00", []string{"2026-01-01 00:00:00"}},
		{"@annually", "2025-05-01 12:00:00", []string{"2026-01-01 00:00:00"}},
		{"@every 90s", "2025-05-01 12:00:00", []string{"2025-05-01 12:01:30", "2025-05-01 12:03:00"}},
		{"0 0 30 2 *", "2025-05-01 12:00:00", []string{"0001-01-01 00:00:00"}},
	} {
		s, err := Parse(tc.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.spec, err)
			continue
		}
		at := utc(tc.from)
		for i, w := range tc.want {
			at = s.Next(at)
			if !at.Equal(utc(w)) {
				t.Errorf("%q from %s: activation %d = %s, want %s", tc.spec, tc.from, i, at.Format(time.DateTime), w)
				break
			}
		}
	}
}

func TestScheduleAcrossDaylightSaving(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	s, _ := Parse("30 2 * * *")
	// 2025-03-09 02:30 does not exist in New York: the next run is the day after.
	got := s.Next(time.Date(2025, 3, 8, 12, 0, 0, 0, ny))
	if want := time.Date(2025, 3, 10, 2, 30, 0, 0, ny); !got.Equal(want) {
		t.Fatalf("next = %v, want %v", got, want)
	}
	s, _ = Parse("0 9 * * *")
	got = s.Next(time.Date(2025, 3, 8, 12, 0, 0, 0, ny))
	if want := time.Date(2025, 3, 9, 9, 0, 0, 0, ny); !got.Equal(want) || got.UTC().Hour() != 13 {
		t.Fatalf("next = %v (%v UTC), want 09:00 EDT", got, got.UTC())
	}
}
