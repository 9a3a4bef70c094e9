package renewal_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/renewal"
)

// uids returns n UIDs shaped like the API server's (random UUIDs), the same on every run.
func uids(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, seed))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, 0x8000|r.Uint32()&0x3fff, r.Uint64()&0xffffffffffff)
	}
	return out
}

// peak is the most renewal times in one second.
func peak(times []time.Time) int {
	buckets := map[int64]int{}
	p := 0
	for _, at := range times {
		buckets[at.Unix()]++
		p = max(p, buckets[at.Unix()])
	}
	return p
}

// 100 AssumedRoles issued in the same second: jitter from the UID alone puts three or more
// renewals into one second of the window; choosing among the slots keeps every second at two at
// most (2% of 100), for every one of these sets of UIDs.
func TestSpreadKeepsABurstOutOfOneSecond(t *testing.T) {
	exp := t0.Add(time.Hour)
	worstAlone, worstPlaced := 0, 0
	for set := range uint64(20) {
		var alone, placed []time.Time
		var sp renewal.Spread
		for _, uid := range uids(100, set) {
			alone = append(alone, renewal.Time(t0, exp, renewal.Policy{}, uid))
			slot, at := sp.Place(uid, t0, exp, renewal.Policy{}, uid)
			if want := renewal.Time(t0, exp, renewal.Policy{}, renewal.Seed(uid, slot)); !at.Equal(want) {
				t.Fatalf("slot %d placed at %v, but its renewal time is %v", slot, at, want)
			}
			placed = append(placed, at)
		}
		worstAlone, worstPlaced = max(worstAlone, peak(alone)), max(worstPlaced, peak(placed))
		if p, _ := sp.Peak(); p != peak(placed) {
			t.Errorf("set %d: Spread reports a peak of %d, the placed times have %d", set, p, peak(placed))
		}
	}
	if worstPlaced > 2 {
		t.Errorf("with slots the busiest second holds %d of 100 renewals, want at most 2", worstPlaced)
	}
	if worstAlone <= 2 {
		t.Errorf("without slots the busiest second holds %d of 100: this test no longer shows what slots are for", worstAlone)
	}
	t.Logf("busiest second over 20 bursts of 100: %d from the UID alone, %d with slots", worstAlone, worstPlaced)
}

// At 10,000 issued over a minute the busiest second is lower with slots than without.
func TestSpreadAtScale(t *testing.T) {
	var alone, placed []time.Time
	var sp renewal.Spread
	for i, uid := range uids(10000, 7) {
		issued := t0.Add(time.Duration(i) * 6 * time.Millisecond).Truncate(time.Second) // 60 s of issuing
		exp := issued.Add(time.Hour)
		alone = append(alone, renewal.Time(issued, exp, renewal.Policy{}, uid))
		_, at := sp.Place(uid, issued, exp, renewal.Policy{}, uid)
		placed = append(placed, at)
	}
	a, p := peak(alone), peak(placed)
	if p >= a {
		t.Errorf("busiest second: %d with slots, %d without", p, a)
	}
	// 10,000 over the 240 s of issuing plus window: the mean second holds about 42.
	if p > 60 {
		t.Errorf("busiest second holds %d of 10,000 with slots", p)
	}
	t.Logf("busiest second of 10,000: %d from the UID alone, %d with slots", a, p)
}

// A restarted process relearns the schedule from what the Secrets record (Observe) and keeps
// new issuances out of the full seconds; re-placing or forgetting an object frees its second.
func TestSpreadObserveAndForget(t *testing.T) {
	exp := t0.Add(time.Hour)
	var before renewal.Spread
	scheduled := map[string]time.Time{}
	for _, uid := range uids(100, 99) {
		_, at := before.Place(uid, t0, exp, renewal.Policy{}, uid)
		scheduled[uid] = at
	}
	var after renewal.Spread
	for uid, at := range scheduled {
		after.Observe(uid, at)
		after.Observe(uid, at) // reconciled again: counted once
	}
	pb, sb := before.Peak()
	pa, sa := after.Peak()
	if pa != pb || sa != sb {
		t.Fatalf("after observing: peak %d over %d seconds, before the restart %d over %d", pa, sa, pb, sb)
	}
	for uid := range scheduled {
		after.Forget(uid)
	}
	if p, s := after.Peak(); p != 0 || s != 0 {
		t.Errorf("all forgotten, still peak %d over %d seconds", p, s)
	}

	// Re-placing an object moves it: its old second is freed.
	var sp renewal.Spread
	_, first := sp.Place("a", t0, exp, renewal.Policy{}, "uid-a")
	_, second := sp.Place("a", t0.Add(time.Hour), exp.Add(time.Hour), renewal.Policy{}, "uid-a")
	if p, s := sp.Peak(); p != 1 || s != 1 {
		t.Errorf("one object placed twice (%v, then %v): peak %d over %d seconds, want 1 over 1", first, second, p, s)
	}
}

func TestSeedSlotZeroIsTheUID(t *testing.T) {
	if renewal.Seed("uid", 0) != "uid" {
		t.Error("slot 0 must be the UID, so Secrets without a slot keep their renewal time")
	}
	for _, bad := range []int{-1, renewal.Choices, 1000} {
		if renewal.Seed("uid", bad) != "uid" {
			t.Errorf("slot %d out of range is not treated as slot 0", bad)
		}
	}
	if renewal.Seed("uid", 1) == renewal.Seed("uid", 2) {
		t.Error("slots share a seed")
	}
}

func BenchmarkSpreadPlace(b *testing.B) {
	var sp renewal.Spread
	ids := uids(1000, 3)
	exp := t0.Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sp.Place(ids[i%len(ids)], t0, exp, renewal.Policy{}, ids[i%len(ids)])
		i++
	}
}
