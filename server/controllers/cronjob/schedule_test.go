package cronjob

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseScheduleNext(t *testing.T) {
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
		s, err := parseSchedule(tc.spec)
		if err != nil {
			t.Errorf("parseSchedule(%q): %v", tc.spec, err)
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

func TestParseScheduleErrors(t *testing.T) {
	for _, spec := range []string{
		"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 7",
		"5-1 * * * *", "*/0 * * * *", "a * * * *", "* * * foo *", "@often", "@every never", "TZ=UTC * * * * *",
		"1-2-3 * * * *", "*-5 * * * *",
	} {
		if _, err := parseSchedule(spec); err == nil {
			t.Errorf("parseSchedule(%q) accepted", spec)
		}
	}
}

func TestScheduleAcrossDaylightSaving(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	s, _ := parseSchedule("30 2 * * *")
	// 2025-03-09 02:30 does not exist in New York: the next run is the day after.
	got := s.Next(time.Date(2025, 3, 8, 12, 0, 0, 0, ny))
	if want := time.Date(2025, 3, 10, 2, 30, 0, 0, ny); !got.Equal(want) {
		t.Fatalf("next = %v, want %v", got, want)
	}
	s, _ = parseSchedule("0 9 * * *")
	got = s.Next(time.Date(2025, 3, 8, 12, 0, 0, 0, ny))
	if want := time.Date(2025, 3, 9, 9, 0, 0, 0, ny); !got.Equal(want) || got.UTC().Hour() != 13 {
		t.Fatalf("next = %v (%v UTC), want 09:00 EDT", got, got.UTC())
	}
}

func TestMostRecentScheduleTimeOfIrregularSchedules(t *testing.T) {
	monthly, _ := parseSchedule("0 0 1 * *")
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC))}}
	now := time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)
	recent, missed, err := mostRecentScheduleTime(cj, now, monthly, false)
	if err != nil || recent == nil {
		t.Fatalf("recent %v err %v", recent, err)
	}
	if want := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC); !recent.Equal(want) {
		t.Fatalf("most recent %v, want %v (missed estimate %d)", recent, want, missed)
	}
	every, _ := parseSchedule("@every 90s")
	cj.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	recent, missed, _ = mostRecentScheduleTime(cj, now, every, false)
	if want := now.Add(-time.Hour + 40*90*time.Second); recent == nil || !recent.Equal(want) || missed != 40 {
		t.Fatalf("most recent %v missed %d, want %v and 40", recent, missed, want)
	}
}
