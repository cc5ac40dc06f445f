package main

import (
	"sort"
	"time"
)

// Settings is how long a case is measured: the same defaults as the Rust side's criterion
// configuration (20 samples, 0.5 s warm-up, 2 s of measurement).
type Settings struct {
	Samples int
	WarmUp  time.Duration
	Measure time.Duration
}

// FullSettings are the settings of a full comparison.
var FullSettings = Settings{Samples: 20, WarmUp: 500 * time.Millisecond, Measure: 2 * time.Second}

// QuickSettings are the settings of a quick comparison.
var QuickSettings = Settings{Samples: 10, WarmUp: 100 * time.Millisecond, Measure: 300 * time.Millisecond}

// TinySettings run each case a handful of iterations: for the tests.
var TinySettings = Settings{Samples: 2, WarmUp: 0, Measure: 0}

// withSamples is s with another sample count (criterion's per-group sample_size).
func (s Settings) withSamples(n int) Settings {
	if n < s.Samples {
		s.Samples = n
	}
	return s
}

// measure returns the median time of one iteration, in nanoseconds, the way criterion does: a
// warm-up that doubles the iteration count until the warm-up time is spent, then samples whose
// iteration counts grow linearly (d, 2d, 3d, ...) to fill the measurement time, or, when even
// d = 1 would take too long, samples of equal iteration counts (criterion's flat sampling).
// run(iters) runs iters iterations and returns the time they took.
func measure(s Settings, run func(iters int) time.Duration) float64 {
	iters, spent := 1, time.Duration(0)
	per := 0.0
	for {
		t := run(iters)
		spent += t
		per = float64(t) / float64(iters)
		if spent >= s.WarmUp {
			break
		}
		iters *= 2
	}
	if per <= 0 {
		per = 1
	}
	n := s.Samples
	if n < 1 {
		n = 1
	}
	target := float64(s.Measure)
	counts := make([]int, n)
	if linear := per * float64(n*(n+1)/2); linear <= target {
		d := int(target / linear)
		if d < 1 {
			d = 1
		}
		for k := range counts {
			counts[k] = d * (k + 1)
		}
	} else {
		c := int(target / (per * float64(n)))
		if c < 1 {
			c = 1
		}
		for k := range counts {
			counts[k] = c
		}
	}
	times := make([]float64, n)
	for k, c := range counts {
		times[k] = float64(run(c)) / float64(c)
	}
	return median(times)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// timed is a run function for cases with no per-iteration setup.
func timed(body func()) func(iters int) time.Duration {
	return func(iters int) time.Duration {
		start := time.Now()
		for i := 0; i < iters; i++ {
			body()
		}
		return time.Since(start)
	}
}
