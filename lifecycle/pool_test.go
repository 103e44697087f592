package lifecycle

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testPool(t *testing.T, policy Policy, n int) *Pool {
	t.Helper()
	var ws []WorkerConfig
	for i := 0; i < n; i++ {
		ws = append(ws, WorkerConfig{Name: string(rune('a' + i)), Network: "tcp", Address: "127.0.0.1:" + string(rune('1'+i))})
	}
	p, err := NewPool(Config{Workers: ws, Policy: policy, InitialState: StateUp})
	require.NoError(t, err)
	return p
}

func picks(p *Pool, n int) map[string]int {
	got := map[string]int{}
	for i := 0; i < n; i++ {
		if w := p.Pick(); w != nil {
			got[w.Name]++
		}
	}
	return got
}

func TestLeastInFlightTiesAreRoundRobin(t *testing.T) {
	p := testPool(t, LeastInFlight, 3)
	assert.Equal(t, map[string]int{"a": 100, "b": 100, "c": 100}, picks(p, 300))
}

func TestLeastInFlightAvoidsBusyWorker(t *testing.T) {
	p := testPool(t, LeastInFlight, 3)
	p.Workers()[1].AddInFlight(1) // b is busy with one long request
	assert.Equal(t, map[string]int{"a": 50, "c": 50}, picks(p, 100))
}

func TestRoundRobinIgnoresLoad(t *testing.T) {
	p := testPool(t, RoundRobin, 3)
	p.Workers()[1].AddInFlight(5)
	assert.Equal(t, map[string]int{"a": 100, "b": 100, "c": 100}, picks(p, 300))
}

func TestPickSkipsWorkersNotUp(t *testing.T) {
	for _, policy := range []Policy{LeastInFlight, RoundRobin} {
		t.Run(policy.String(), func(t *testing.T) {
			p := testPool(t, policy, 3)
			p.Workers()[0].SetState(StateDown)
			p.Workers()[2].SetState(StateDraining)
			assert.Equal(t, map[string]int{"b": 10}, picks(p, 10))
			p.Workers()[1].SetState(StateUnknown)
			assert.Nil(t, p.Pick())
		})
	}
}

func TestPickExcept(t *testing.T) {
	p := testPool(t, LeastInFlight, 70) // more than one word of tried bits
	tried := make([]uint64, p.TriedWords())
	require.Len(t, tried, 2)
	for i := 0; i < 70; i++ {
		if i != 65 {
			MarkTried(tried, i)
		}
	}
	for i := 0; i < 5; i++ {
		assert.Equal(t, 65, p.PickExcept(tried, false).Index)
	}
	MarkTried(tried, 65)
	assert.Nil(t, p.PickExcept(tried, false))
}

func TestPickHTTP1OnlySkipsH2C(t *testing.T) {
	p, err := NewPool(Config{InitialState: StateUp, Workers: []WorkerConfig{
		{Name: "h2", Network: "tcp", Address: "127.0.0.1:1", H2C: true},
		{Name: "h1", Network: "unix", Address: "/tmp/w.sock"},
	}})
	require.NoError(t, err)
	for i := 0; i < 4; i++ {
		assert.Equal(t, "h1", p.PickExcept(nil, true).Name)
	}
}

func TestNewPoolErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers []WorkerConfig
		want    string
	}{
		{"empty", nil, "creating pool: no workers"},
		{"no name", []WorkerConfig{{Network: "tcp", Address: "a:1"}}, "creating pool: worker 1 has no name"},
		{"no address", []WorkerConfig{{Name: "a", Network: "tcp"}}, `creating pool: worker "a" has no address`},
		{"duplicate", []WorkerConfig{{Name: "a", Network: "tcp", Address: "a:1"}, {Name: "a", Network: "tcp", Address: "a:2"}}, `creating pool: duplicate worker name "a"`},
		{"network", []WorkerConfig{{Name: "a", Network: "udp", Address: "a:1"}}, `creating pool: worker "a": unknown network "udp"`},
		{"h2c unix", []WorkerConfig{{Name: "a", Network: "unix", Address: "/s", H2C: true}}, `creating pool: worker "a": h2c needs a tcp address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPool(Config{Workers: tc.workers})
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	p := testPool(t, LeastInFlight, 8)
	tried := make([]uint64, p.TriedWords())
	assert.Equal(t, 0.0, testing.AllocsPerRun(1000, func() { p.PickExcept(tried, true) }))
}

func TestParsePolicy(t *testing.T) {
	for _, s := range []string{"least_inflight", "round_robin"} {
		p, err := ParsePolicy(s)
		require.NoError(t, err)
		assert.Equal(t, s, p.String())
	}
	_, err := ParsePolicy("random")
	assert.EqualError(t, err, `unknown load-balancing policy "random" (want least_inflight or round_robin)`)
}

func TestDownWorkerDoesNotHandItsShareToItsNeighbour(t *testing.T) {
	for _, policy := range []Policy{LeastInFlight, RoundRobin} {
		t.Run(policy.String(), func(t *testing.T) {
			p := testPool(t, policy, 3)
			p.Workers()[1].SetState(StateDown)
			assert.Equal(t, map[string]int{"a": 50, "c": 50}, picks(p, 100))
		})
	}
}

// BenchmarkPick is the pick on the request path: without a request limit
// (one atomic load per candidate more than before issue 14) and with one
// (the compare-and-swap count).
func BenchmarkPick(b *testing.B) {
	for _, limit := range []int64{0, 1 << 62} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			cfgs := []WorkerConfig{{Name: "w1", Network: "unix"}, {Name: "w2", Network: "unix"}, {Name: "w3", Network: "unix"}, {Name: "w4", Network: "unix"}}
			p, err := NewPool(Config{Workers: cfgs, Supervised: true, InitialState: StateUp})
			if err != nil {
				b.Fatal(err)
			}
			for _, w := range p.Workers() {
				p.SetRequestLimit(w, limit)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if p.Pick() == nil {
						b.Fatal("no worker")
					}
				}
			})
		})
	}
}
