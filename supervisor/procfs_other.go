//go:build !linux

package supervisor

// procFigures reports whether process figures exist on this system: not
// without Linux's /proc, so the memory and CPU metrics are absent.
const procFigures = false

type procStat struct{}

func readProcTable() map[int]procStat { return nil }

func childrenOf(map[int]procStat) map[int][]int { return nil }

func treeFigures(map[int]procStat, map[int][]int, int) (uint64, float64, bool) { return 0, 0, false }
