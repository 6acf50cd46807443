// Command robfig-oracle answers, for the tests, what the Kubernetes CronJob machinery says of a
// schedule: whether the API server accepts it (cron.ParseStandard, with panic recovery, and no
// TZ/CRON_TZ in the schedule: pkg/apis/batch/validation validateScheduleFormat) and which ticks
// the CronJob controller computes (pkg/controller/cronjob formatSchedule: "TZ=<timeZone> " is
// prepended, then ParseStandard and Schedule.Next; without a timeZone the controller's local
// zone, UTC here).
//
// One JSON object a line on stdin: {"schedule": "...", "zone": "Europe/Berlin" or "", "after":
// RFC 3339, "count": n}; one a line on stdout: {"valid": bool, "error": "...", "next": [RFC 3339
// UTC, ...]} with the n successive ticks after "after" ("" for Next's zero time: no tick in five
// years).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

type query struct {
	Schedule string `json:"schedule"`
	Zone     string `json:"zone"`
	After    string `json:"after"`
	Count    int    `json:"count"`
}

type answer struct {
	Valid bool     `json:"valid"`
	Error string   `json:"error,omitempty"`
	Next  []string `json:"next"`
}

// parse is k8s.io/kubernetes pkg/util/parsers ParseCronScheduleWithPanicRecovery.
func parse(schedule string) (sched cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			sched = nil
			err = fmt.Errorf("invalid schedule format: %v", r)
		}
	}()
	return cron.ParseStandard(schedule)
}

func answerFor(q query) answer {
	if _, err := parse(q.Schedule); err != nil {
		return answer{Error: err.Error(), Next: []string{}}
	}
	if strings.Contains(q.Schedule, "TZ") {
		return answer{Error: "cannot use TZ or CRON_TZ in schedule, use timeZone field instead", Next: []string{}}
	}
	spec := q.Schedule
	if q.Zone != "" {
		spec = fmt.Sprintf("TZ=%s %s", q.Zone, q.Schedule)
	}
	sched, err := parse(spec)
	if err != nil {
		return answer{Error: err.Error(), Next: []string{}}
	}
	out := answer{Valid: true, Next: []string{}}
	if q.After == "" {
		return out
	}
	t, err := time.Parse(time.RFC3339Nano, q.After)
	if err != nil {
		return answer{Error: "after: " + err.Error(), Next: []string{}}
	}
	for i := 0; i < max(q.Count, 1); i++ {
		t = sched.Next(t)
		if t.IsZero() {
			out.Next = append(out.Next, "")
			break
		}
		out.Next = append(out.Next, t.UTC().Format(time.RFC3339))
	}
	return out
}

func main() {
	time.Local = time.UTC // the controller's zone for a CronJob without timeZone
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		var q query
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			fmt.Fprintln(os.Stderr, "robfig-oracle:", err)
			os.Exit(2)
		}
		if err := enc.Encode(answerFor(q)); err != nil {
			os.Exit(2)
		}
		out.Flush()
	}
}
