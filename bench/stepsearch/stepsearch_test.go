package stepsearch

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// capacity passes every rate up to limit.
func capacity(limit float64, tried *[]float64) func(float64) (bool, error) {
	return func(r float64) (bool, error) {
		*tried = append(*tried, math.Round(r))
		return r <= limit, nil
	}
}

func TestClimbsThenRefines(t *testing.T) {
	var tried []float64
	best, err := Run(Options{Start: 1000, Factor: 1.5, Min: 100, MaxSteps: 20, Refine: 2}, capacity(2600, &tried))
	if err != nil {
		t.Fatal(err)
	}
	// 1000, 1500, 2250 pass; 3375 misses; then sqrt(2250*3375) = 2756
	// misses and sqrt(2250*2756) = 2490 passes.
	if want := []float64{1000, 1500, 2250, 3375, 2756, 2490}; !slices.Equal(tried, want) {
		t.Fatalf("tried %v, want %v", tried, want)
	}
	if math.Round(best) != 2490 {
		t.Fatalf("best %v, want 2490", best)
	}
}

func TestDescendsWhenTheFirstMisses(t *testing.T) {
	var tried []float64
	best, err := Run(Options{Start: 1000, Factor: 2, Min: 100, MaxSteps: 20, Refine: 1}, capacity(300, &tried))
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{1000, 500, 250, 354}; !slices.Equal(tried, want) {
		t.Fatalf("tried %v, want %v", tried, want)
	}
	if best != 250 {
		t.Fatalf("best %v, want 250", best)
	}
}

func TestNothingPasses(t *testing.T) {
	var tried []float64
	best, err := Run(Options{Start: 1000, Factor: 2, Min: 200, MaxSteps: 20, Refine: 2}, capacity(10, &tried))
	if err != nil || best != 0 {
		t.Fatalf("best %v, err %v", best, err)
	}
	if want := []float64{1000, 500, 250}; !slices.Equal(tried, want) {
		t.Fatalf("tried %v, want %v", tried, want)
	}
}

func TestBoundedAndErrors(t *testing.T) {
	var tried []float64
	best, err := Run(Options{Start: 1, Factor: 2, MaxSteps: 4, Refine: 2}, capacity(1e9, &tried))
	if err != nil || best != 8 || len(tried) != 4 {
		t.Fatalf("best %v, tried %v, err %v", best, tried, err)
	}
	boom := errors.New("boom")
	n := 0
	best, err = Run(Options{Start: 1, Factor: 2, MaxSteps: 9}, func(float64) (bool, error) {
		if n++; n == 3 {
			return false, boom
		}
		return true, nil
	})
	if !errors.Is(err, boom) || best != 2 {
		t.Fatalf("best %v, err %v", best, err)
	}
	if _, err := Run(Options{Start: 1, Factor: 1, MaxSteps: 3}, capacity(1, &tried)); err == nil {
		t.Fatal("a factor of 1 was accepted")
	}
}
