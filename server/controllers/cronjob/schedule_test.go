package cronjob

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/cron"
)

func mustSchedule(t *testing.T, spec string) schedule {
	t.Helper()
	s, err := cron.Parse(spec)
	if err != nil {
		t.Fatalf("parse %q: %v", spec, err)
	}
	return schedule{s, time.UTC}
}

func TestMostRecentScheduleTimeOfIrregularSchedules(t *testing.T) {
	monthly := mustSchedule(t, "0 0 1 * *")
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC))}}
	now := time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)
	recent, missed, err := mostRecentScheduleTime(cj, now, monthly, false)
	if err != nil || recent == nil {
		t.Fatalf("recent %v err %v", recent, err)
	}
	if want := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC); !recent.Equal(want) {
		t.Fatalf("most recent %v, want %v (missed estimate %d)", recent, want, missed)
	}
	every := mustSchedule(t, "@every 90s")
	cj.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	recent, missed, _ = mostRecentScheduleTime(cj, now, every, false)
	if want := now.Add(-time.Hour + 40*90*time.Second); recent == nil || !recent.Equal(want) || missed != 40 {
		t.Fatalf("most recent %v missed %d, want %v and 40", recent, missed, want)
	}
}
