package sts_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// One AssumeRole through pkg/sts, the SDK (signing, Query protocol, XML) and the emulator.
func BenchmarkAssumeRoleRoundTrip(b *testing.B) {
	srv := startEmulator(b, ststest.Options{})
	c := newClient(b, srv.URL, func(o *sts.Options) { o.QPS = 1e9; o.Burst = 1 << 30 })
	req := fullRequest()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.AssumeRole(ctx, req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	req := fullRequest()
	req.Region = "us-east-1"
	b.ReportAllocs()
	for b.Loop() {
		if err := req.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRequestHash(b *testing.B) {
	req := fullRequest()
	b.ReportAllocs()
	for b.Loop() {
		_ = req.Hash()
	}
}

// 1,000 concurrent AssumeRole calls against a limiter of 200 qps with a burst of 20. Reported:
// the rate the emulator saw after the burst (calls/s, should be ≈ 200) and the most calls it saw
// in any one-second window (should be ≤ qps + burst). Run with -benchtime=1x: one iteration takes
// about five seconds by design.
func BenchmarkRateLimiterBurst1000(b *testing.B) {
	const qps, burst, calls = 200, 20, 1000
	for b.Loop() {
		srv := startEmulator(b, ststest.Options{})
		c := newClient(b, srv.URL, func(o *sts.Options) { o.QPS = qps; o.Burst = burst; o.Timeout = time.Minute })
		var wg sync.WaitGroup
		for range calls {
			wg.Go(func() {
				if _, err := c.AssumeRole(context.Background(), fullRequest(), nil); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		times := make([]time.Time, 0, calls)
		for _, call := range srv.Calls() {
			times = append(times, call.Time)
		}
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		if len(times) != calls {
			b.Fatalf("%d calls reached STS, want %d", len(times), calls)
		}
		steady := float64(calls-burst) / times[len(times)-1].Sub(times[burst]).Seconds()
		peak, lo := 0, 0
		for hi := range times {
			for times[hi].Sub(times[lo]) >= time.Second {
				lo++
			}
			peak = max(peak, hi-lo+1)
		}
		b.ReportMetric(steady, "calls/s")
		b.ReportMetric(float64(peak), "peak-calls-in-1s")
		b.ReportMetric(qps, "configured-qps")
	}
}
