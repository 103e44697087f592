package supervisor

import (
	"bytes"
	"os"
	"strconv"
)

// procFigures reports whether process figures exist on this system (Linux:
// /proc).
const procFigures = true

// clockTicks is the kernel's USER_HZ, the unit of the CPU times in
// /proc/<pid>/stat: 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what the sampler reads of one process from /proc/<pid>/stat
// (proc(5)).
type procStat struct {
	ppid int
	// cpu is utime + stime + cutime + cstime in clock ticks: the process's
	// own CPU and that of the children it reaped.
	cpu uint64
	// rss is resident pages.
	rss uint64
}

// readProcTable reads /proc/*/stat of every process; one that vanishes
// meanwhile is skipped. It allocates: the sampler calls it once per sample
// interval, off the request path.
func readProcTable() map[int]procStat {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer dir.Close()
	names, _ := dir.Readdirnames(-1)
	table := make(map[int]procStat, len(names))
	buf := make([]byte, 0, 1024)
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		buf, err = readFileInto(buf[:0], "/proc/"+name+"/stat")
		if err != nil {
			continue
		}
		if st, ok := parseStat(buf); ok {
			table[pid] = st
		}
	}
	return table
}

func readFileInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, nil
		}
	}
}

// parseStat parses one /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(b []byte) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 22 {
		return procStat{}, false
	}
	num := func(n int) uint64 {
		v, _ := strconv.ParseUint(string(f[n-3]), 10, 64)
		return v
	}
	return procStat{
		ppid: int(num(4)),
		cpu:  num(14) + num(15) + num(16) + num(17),
		rss:  num(24),
	}, true
}

// treeFigures sums resident bytes and CPU seconds over pid and every
// descendant in table (children indexes table by parent pid).
func treeFigures(table map[int]procStat, children map[int][]int, pid int) (rssBytes uint64, cpuSeconds float64, ok bool) {
	if _, ok := table[pid]; !ok {
		return 0, 0, false
	}
	page := uint64(os.Getpagesize())
	var ticks uint64
	stack := []int{pid}
	for n := 0; len(stack) > 0 && n < 1<<16; n++ {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		st := table[p]
		rssBytes += st.rss * page
		ticks += st.cpu
		stack = append(stack, children[p]...)
	}
	return rssBytes, float64(ticks) / clockTicks, true
}

// childrenOf indexes table by parent pid.
func childrenOf(table map[int]procStat) map[int][]int {
	children := make(map[int][]int, len(table))
	for pid, st := range table {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	return children
}
