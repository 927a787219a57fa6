// Command artifacts (make bench-artifacts) measures the worker's artifact
// downloads (pkg/worker.Fetch, the code the worker binary runs, driven
// in-process) against their references, on one 1 GiB file of random data:
//
//	HTTP: worker.Fetch from a local HTTP server (Go's http.FileServer, in this
//	      process; it serves Range) against `curl -o` of the same URL;
//	S3:   worker.Fetch with ranged parallel GETs (the worker's PartSize and
//	      Concurrency) against the same code with Concurrency=1 (one stream),
//	      and a plain aws-sdk GetObject io.Copy'd to a file, all from a real
//	      S3-compatible server that checks SigV4 (versitygw, posix backend).
//
// Every worker run starts in a fresh, empty directory and must report
// Downloaded with the right sha256 and size, with every byte read from the
// server; curl's and the SDK's files are checked by size (and sha256 in round
// 1), outside the timer. The worker verifies sha256 (streamed for HTTP and
// single-stream S3, re-read after a parallel S3 download) and fsyncs before
// renaming: that is included, since it is what a user gets. curl and the plain SDK copy do neither; the fsync of their file
// right after they finish is timed separately, so both "as run" and "same
// durability" ratios are printed.
//
// Runs go to a directory on the real disk (--dir) and, unless --tmpfs="", to
// a tmpfs (where fsync is free), so the disk's share is visible; each round
// also times a plain write + fsync of the same size to the disk (its floor at
// that moment), a Go GET without hash (tmpfs), and the servers' ceilings
// without any file (curl to /dev/null, one and ranged S3 GETs to nothing).
// Rounds are interleaved: every round runs every measurement once, and even
// rounds run them in the reverse order. Each worker run is broken down into
// phases from outside the package: a probe on the HTTP transport (bytes on the
// wire, last body byte) and a watch on the worker's temp-file descriptor
// (/proc/self/fdinfo: its offset moves only while the parallel path re-reads
// the file to hash it; it closes after the fsync). CPU time of this process,
// curl and versitygw, the machine's busy and iowait share are recorded per run.
//
//	go run ./bench/artifacts [--rounds 5] [--size-mib 1024] [--dir /tmp] [--tmpfs auto] [--versitygw PATH]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/worker"
)

const (
	s3Access = "coral-bench-access"
	s3Secret = "coral-bench-secret-key"
	bucket   = "bench"
	objName  = "blob.bin"
	mib      = 1 << 20
)

type config struct {
	rounds      int
	sizeMiB     int64
	dir         string
	tmpfs       string
	versitygw   string
	curl        string
	partSizeMiB int64
	concurrency int
	timeout     time.Duration
	seed        uint64
}

func main() {
	var c config
	flag.IntVar(&c.rounds, "rounds", 5, "interleaved rounds (at least 3); each runs every measurement once")
	flag.Int64Var(&c.sizeMiB, "size-mib", 1024, "size of the random file in MiB")
	flag.StringVar(&c.dir, "dir", os.TempDir(), "directory on the real disk for the work files (a temp dir is made in it and removed)")
	flag.StringVar(&c.tmpfs, "tmpfs", "auto", `tmpfs directory for a second set of runs without disk cost ("auto" = /dev/shm if it is a tmpfs with room, "" = none)`)
	flag.StringVar(&c.versitygw, "versitygw", "", "versitygw binary (default: $CORAL_VERSITYGW, hack/install-test-servers.sh's cache, then $PATH)")
	flag.StringVar(&c.curl, "curl", "curl", "curl binary")
	flag.Int64Var(&c.partSizeMiB, "part-size-mib", 0, "worker S3 PartSize in MiB for the parallel runs (0 = the worker's default)")
	flag.IntVar(&c.concurrency, "concurrency", 0, "worker S3 Concurrency for the parallel runs (0 = the worker's default)")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Minute, "limit for one measurement")
	flag.Uint64Var(&c.seed, "seed", 0, "content seed (0 = random)")
	flag.Parse()
	if c.rounds < 3 {
		fmt.Fprintln(os.Stderr, "bench-artifacts: --rounds must be at least 3")
		os.Exit(2)
	}
	if c.sizeMiB < 64 {
		fmt.Fprintln(os.Stderr, "bench-artifacts: --size-mib must be at least 64")
		os.Exit(2)
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "bench-artifacts: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-artifacts:", err)
		os.Exit(1)
	}
}

// dest is where downloads land.
type dest struct {
	name string // "disk" or "tmpfs"
	dir  string
	fs   string
}

// measurement is one kind of run.
type measurement struct {
	key   string
	dest  *dest // nil: no file written
	label string
	fn    func(ctx context.Context, b *bench, d *dest, r *result) error
}

// result is one timed run.
type result struct {
	round  int
	key    string
	dest   string
	wall   time.Duration // the measured operation
	fsync  time.Duration // fsync of the output right after (curl, plain SDK copy)
	wire   int64         // response body bytes read from the server
	phases *phases       // worker runs
	// CPU seconds during the run: this process (client, HTTP server, probes),
	// its child (curl), versitygw; and the whole machine's shares.
	cpuSelf, cpuChild, cpuVgw float64
	busy, iowait              float64 // fraction of all CPUs, machine-wide
	others                    float64 // cores busy outside this bench (machine busy - ours)
}

// phases of a worker run, from outside pkg/worker.
type phases struct {
	transfer time.Duration // start → last body byte (HEAD, GETs, writes, streamed hash)
	fsync    time.Duration // last byte → temp file re-read starts (parallel) or closes (streamed)
	rehash   time.Duration // parallel S3: re-reading the file to hash it (hashFile)
	finish   time.Duration // temp file closed → Fetch returns (rename, dir fsync, manifest)
	ok       bool
}

type bench struct {
	c        config
	size     int64
	sum      string
	work     string
	srcPath  string
	httpURL  string
	s3URL    string
	endpoint string
	probe    *probe
	s3Client *s3.Client
	vgw      *exec.Cmd
	partSize int64
	conc     int
	dests    []*dest
	results  []*result
	seq      int
	block    []byte // 1 MiB of random data for the disk floor
}

func run(ctx context.Context, c config) error {
	b := &bench{c: c, size: c.sizeMiB * mib, probe: &probe{}}
	vgwBin, err := findVersitygw(c.versitygw)
	if err != nil {
		return err
	}
	curlBin, err := exec.LookPath(c.curl)
	if err != nil {
		return fmt.Errorf("curl: %v (apt-get install -y curl)", err)
	}
	b.c.curl = curlBin

	if fsType(c.dir) == "tmpfs" {
		fmt.Fprintf(os.Stderr, "bench-artifacts: warning: --dir %s is a tmpfs, not a disk\n", c.dir)
	}
	if b.work, err = os.MkdirTemp(c.dir, "coral-bench-artifacts-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)
	b.dests = append(b.dests, &dest{name: "disk", dir: filepath.Join(b.work, "dl"), fs: fsType(c.dir)})
	if t := pickTmpfs(c.tmpfs, 2*b.size); t != "" {
		td, err := os.MkdirTemp(t, "coral-bench-artifacts-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(td)
		b.dests = append(b.dests, &dest{name: "tmpfs", dir: td, fs: fsType(t)})
	}

	b.printHeader(vgwBin)

	// The file, once per bench run.
	t := time.Now()
	if err := b.makeSource(); err != nil {
		return err
	}
	fmt.Printf("source: %d MiB of random data (seed %d), sha256 %s…, written and fsynced in %.1f s\n",
		c.sizeMiB, c.seed, b.sum[:16], time.Since(t).Seconds())

	stopHTTP, err := b.startHTTP()
	if err != nil {
		return err
	}
	defer stopHTTP()

	t = time.Now()
	if err := b.startS3(ctx, vgwBin); err != nil {
		return err
	}
	defer b.stopS3()
	if err := b.upload(ctx); err != nil {
		return err
	}
	fmt.Printf("versitygw on %s: bucket %q, object %s uploaded and checked in %.1f s\n", b.endpoint, bucket, objName, time.Since(t).Seconds())

	// The worker's ranged-download shape.
	if os.Getenv("AWS_CA_BUNDLE") != "" {
		// LoadDefaultConfig refuses a custom *http.Client (the bench's probe)
		// when a CA bundle is set; the store is plain http on loopback anyway.
		fmt.Println("note: AWS_CA_BUNDLE is set; unset for this process (plain-http loopback store, and worker.NewS3Fetcher rejects S3Config.HTTPClient with it)")
		os.Unsetenv("AWS_CA_BUNDLE")
	}
	f, err := b.newFetcher(ctx)
	if err != nil {
		return err
	}
	b.partSize, b.conc = f.PartSize, f.Concurrency
	if c.partSizeMiB > 0 {
		b.partSize = c.partSizeMiB * mib
	}
	if c.concurrency > 0 {
		b.conc = c.concurrency
	}
	fmt.Printf("worker S3 parallel shape: PartSize %d MiB × Concurrency %d (%d ranged GETs per download)\n",
		b.partSize/mib, b.conc, (b.size+b.partSize-1)/b.partSize)
	fmt.Println()

	if err := b.calibrate(ctx); err != nil {
		return err
	}

	b.block = make([]byte, mib)
	rand.NewChaCha8([32]byte{2}).Read(b.block)
	ms := b.measurements()
	// Warm-up, untimed: connections, page cache of both servers' files.
	for _, m := range ms {
		if m.dest == nil {
			r := &result{}
			if err := m.fn(ctx, b, m.dest, r); err != nil {
				return fmt.Errorf("warm-up %s: %w", m.key, err)
			}
		}
	}
	fmt.Printf("\n== runs (%d rounds; odd rounds in the order below, even rounds reversed) ==\n", c.rounds)
	for _, m := range ms {
		fmt.Printf("  %-24s %s\n", m.key, m.label)
	}
	fmt.Println()
	fmt.Printf("%-5s %-24s %9s %6s %8s %8s %8s %5s %6s %6s  %s\n", "round", "run", "time", "MB/s", "+fsync", "cpu-us", "cpu-vgw", "busy", "others", "iowait", "phases: transfer / fsync / re-hash / rename+manifest")
	start := time.Now()
	for r := 1; r <= c.rounds; r++ {
		order := slices.Clone(ms)
		if r%2 == 0 {
			slices.Reverse(order)
		}
		for _, m := range order {
			res, err := b.measure(ctx, r, m)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, m.key, err)
			}
			b.printRun(res)
		}
	}
	fmt.Printf("(timed rounds took %.0f s)\n", time.Since(start).Seconds())
	b.printSummary()
	return nil
}

func (b *bench) printHeader(vgwBin string) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("bench-artifacts: worker.Fetch (pkg/worker, in-process) vs curl -o and vs a single S3 stream\n")
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), load average %s, %s, %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0),
		strings.Join(strings.Fields(string(load))[:3], " "), memInfo(), runtime.Version())
	fmt.Printf("curl: %s (%s)\n", b.c.curl, firstLine(exec.Command(b.c.curl, "--version")))
	fmt.Printf("versitygw: %s (%s)\n", vgwBin, firstLine(exec.Command(vgwBin, "--version")))
	for _, d := range b.dests {
		fmt.Printf("%-5s downloads: %s (%s)\n", d.name, d.dir, d.fs)
	}
}

// measurements, in round order: pairs that are compared stay adjacent.
func (b *bench) measurements() []measurement {
	var ms []measurement
	for _, d := range b.dests {
		ms = append(ms,
			measurement{d.name + " http worker", d, "worker.Fetch http:// (stream, sha256 inline, fsync, rename, manifest)", runHTTPWorker},
			measurement{d.name + " http curl -o", d, "curl -sS --fail -o FILE URL; then fsync(FILE) timed apart (+fsync)", runCurl},
		)
		if d.name == "tmpfs" {
			// Where the worker's own cost shows: the same Go client and copy, without the hash.
			ms = append(ms, measurement{d.name + " http go GET", d, "net/http GET, io.CopyBuffer(file, body, 1 MiB): the worker's loop without sha256 (+fsync)", runGoGet})
		}
		ms = append(ms,
			measurement{d.name + " s3 worker par", d, fmt.Sprintf("worker.Fetch s3:// ranged GETs, %d MiB × %d (then fsync, re-read sha256, rename)", b.partSize/mib, b.conc), runS3Par},
			measurement{d.name + " s3 worker 1", d, "worker.Fetch s3:// Concurrency=1: one GET, sha256 inline, fsync, rename", runS3Single},
			measurement{d.name + " s3 sdk GetObject", d, "plain aws-sdk GetObject, io.Copy to a file; then fsync timed apart (+fsync)", runSDKFile},
		)
	}
	ms = append(ms,
		measurement{"- disk write+fsync", b.dests[0], "floor of a durable 1-file write on the disk: write from memory (1 MiB writes), fsync (+fsync)", runDiskFloor},
		measurement{"- http curl >/dev/null", nil, "ceiling of the HTTP server + loopback: curl -o /dev/null", runCurlNull},
		measurement{"- s3 store 1 stream", nil, "ceiling of the store, one stream: GetObject → discard", runStore1},
		measurement{"- s3 store ranged", nil, fmt.Sprintf("ceiling of the store, worker's shape: %d MiB × %d ranged GETs → discard", b.partSize/mib, b.conc), runStoreRanged},
	)
	return ms
}

// ---------------------------------------------------------------- setup

func findVersitygw(flagPath string) (string, error) {
	for _, p := range []string{flagPath, os.Getenv("CORAL_VERSITYGW"), "/var/cache/coral/tools/versitygw-v1.8.0/versitygw"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errors.New("versitygw not found: run bash hack/install-test-servers.sh (it prints the path) or pass --versitygw")
}

func pickTmpfs(flagVal string, need int64) string {
	switch flagVal {
	case "":
		return ""
	case "auto":
		var st syscall.Statfs_t
		if syscall.Statfs("/dev/shm", &st) != nil || fsType("/dev/shm") != "tmpfs" || int64(st.Bavail)*st.Bsize < need {
			fmt.Fprintln(os.Stderr, "bench-artifacts: no tmpfs with room at /dev/shm: disk runs only")
			return ""
		}
		return "/dev/shm"
	}
	return flagVal
}

func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "?"
	}
	switch uint32(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("fs 0x%x", st.Type)
}

func memInfo() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "memory ?"
	}
	defer f.Close()
	v := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, rest, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseInt(strings.Fields(rest + " 0")[0], 10, 64)
		v[k] = n
	}
	return fmt.Sprintf("memory %.1f GiB, %.1f GiB available", float64(v["MemTotal"])/(1<<20), float64(v["MemAvailable"])/(1<<20))
}

func firstLine(cmd *exec.Cmd) string {
	out, _ := cmd.CombinedOutput()
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return l
}

// makeSource writes the random file on the disk and keeps its sha256.
func (b *bench) makeSource() error {
	src := filepath.Join(b.work, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	b.srcPath = filepath.Join(src, objName)
	f, err := os.Create(b.srcPath)
	if err != nil {
		return err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{0: byte(b.c.seed), 1: byte(b.c.seed >> 8), 2: byte(b.c.seed >> 16), 3: byte(b.c.seed >> 24),
		4: byte(b.c.seed >> 32), 5: byte(b.c.seed >> 40), 6: byte(b.c.seed >> 48), 7: byte(b.c.seed >> 56)})
	h := sha256.New()
	buf := make([]byte, 4*mib)
	for left := b.size; left > 0; left -= int64(len(buf)) {
		p := buf[:min(int64(len(buf)), left)]
		rng.Read(p)
		h.Write(p)
		if _, err := f.Write(p); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	b.sum = hex.EncodeToString(h.Sum(nil))
	return f.Close()
}

func (b *bench) startHTTP() (func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(b.srcPath))), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	b.httpURL = "http://" + l.Addr().String() + "/" + objName
	return func() { srv.Close() }, nil
}

func (b *bench) startS3(ctx context.Context, bin string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	root := filepath.Join(b.work, "s3root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "posix", root)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.vgw = cmd
	b.endpoint = "http://" + addr
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("versitygw did not start: %s", logs.String())
}

func (b *bench) stopS3() {
	if b.vgw != nil {
		b.vgw.Process.Kill()
		b.vgw.Wait()
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// probeClient is an HTTP client like the SDK's default, with the probe.
func (b *bench) probeClient() *http.Client {
	return &http.Client{Transport: &probeTransport{inner: awshttp.NewBuildableClient().GetTransport(), p: b.probe}}
}

// newFetcher is the worker's S3 fetcher, as the worker binary builds it, with the probe on its transport.
func (b *bench) newFetcher(ctx context.Context) (*worker.S3Fetcher, error) {
	return worker.NewS3Fetcher(ctx, worker.S3Config{Endpoint: b.endpoint, PathStyle: true,
		AccessKeyID: s3Access, SecretAccessKey: s3Secret, Retries: 2, HTTPClient: b.probeClient()})
}

func (b *bench) upload(ctx context.Context) error {
	// The bench's own client: configured as the worker's (NewS3Fetcher).
	b.s3Client = s3.New(s3.Options{
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider(s3Access, s3Secret, ""),
		BaseEndpoint:               aws.String(b.endpoint),
		UsePathStyle:               true,
		HTTPClient:                 b.probeClient(),
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	if _, err := b.s3Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	f, err := os.Open(b.srcPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := b.s3Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(objName), Body: f, ContentLength: aws.Int64(b.size)}); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	h, err := b.s3Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(objName)})
	if err != nil {
		return fmt.Errorf("head: %w", err)
	}
	if aws.ToInt64(h.ContentLength) != b.size {
		return fmt.Errorf("the store holds %d bytes, want %d", aws.ToInt64(h.ContentLength), b.size)
	}
	b.s3URL = "s3://" + bucket + "/" + objName
	return nil
}

// ---------------------------------------------------------------- calibration

// calibrate measures, once, what the downloads are made of: sha256 alone,
// re-reading a cached file to hash it (what the parallel S3 path does after
// its download), and writing + fsyncing the file on each destination.
func (b *bench) calibrate(ctx context.Context) error {
	fmt.Println("== what a download is made of (once, before the rounds) ==")
	buf := make([]byte, 64*mib)
	rand.NewChaCha8([32]byte{1}).Read(buf)
	h := sha256.New()
	t := time.Now()
	for left := b.size; left > 0; left -= int64(len(buf)) {
		h.Write(buf[:min(int64(len(buf)), left)])
	}
	d := time.Since(t)
	fmt.Printf("  sha256 of %d MiB in memory (crypto/sha256, one core):          %6.2f s  %5.0f MB/s\n", b.c.sizeMiB, d.Seconds(), mbps(b.size, d))

	f, err := os.Open(b.srcPath)
	if err != nil {
		return err
	}
	t = time.Now()
	h.Reset()
	n, err := io.CopyBuffer(h, f, make([]byte, mib))
	f.Close()
	if err != nil || n != b.size {
		return fmt.Errorf("re-reading the source: %d bytes, %v", n, err)
	}
	d = time.Since(t)
	fmt.Printf("  re-read + sha256 of the cached file (as worker hashFile does):  %6.2f s  %5.0f MB/s\n", d.Seconds(), mbps(b.size, d))

	for _, dst := range b.dests {
		if err := os.MkdirAll(dst.dir, 0o755); err != nil {
			return err
		}
		if dst.name == "disk" {
			fmt.Printf("  write + fsync to disk (%s): measured in every round ('- disk write+fsync')\n", dst.fs)
			continue
		}
		p := filepath.Join(dst.dir, "calibrate.bin")
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		t := time.Now()
		for left := b.size; left > 0; left -= int64(len(buf)) {
			if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
				f.Close()
				os.Remove(p)
				return err
			}
		}
		w := time.Since(t)
		err = f.Sync()
		s := time.Since(t) - w
		f.Close()
		os.Remove(p)
		if err != nil {
			return err
		}
		fmt.Printf("  write %d MiB from memory to %-5s (%s): write %5.2f s, fsync %5.2f s = %5.2f s  %5.0f MB/s durable\n",
			b.c.sizeMiB, dst.name, dst.fs, w.Seconds(), s.Seconds(), (w + s).Seconds(), mbps(b.size, w+s))
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------- measurements

func (b *bench) measure(ctx context.Context, round int, m measurement) (*result, error) {
	ctx, cancel := context.WithTimeout(ctx, b.c.timeout)
	defer cancel()
	r := &result{round: round, key: m.key}
	if m.dest != nil {
		r.dest = m.dest.name
		b.seq++
		dir := filepath.Join(m.dest.dir, fmt.Sprintf("run-%d", b.seq))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		m.dest = &dest{name: m.dest.name, dir: dir, fs: m.dest.fs}
	}
	before := sampleCPU(b.vgw.Process.Pid)
	b.probe.reset()
	if err := m.fn(ctx, b, m.dest, r); err != nil {
		return nil, err
	}
	after := sampleCPU(b.vgw.Process.Pid)
	after.sub(before, r)
	r.wire = b.probe.bytes.Load()
	b.results = append(b.results, r)
	return r, nil
}

// fetchOpts are the worker binary's defaults (main_fetch.go).
func fetchOpts(dir string, h *worker.HTTPFetcher, s *worker.S3Fetcher) worker.FetchOptions {
	return worker.FetchOptions{Dir: dir, Retries: 3, Backoff: time.Second, Timeout: 30 * time.Minute, HTTP: h, S3: s}
}

// runWorker drives worker.Fetch and checks that it did the work.
func (b *bench) runWorker(ctx context.Context, d *dest, r *result, url string, o worker.FetchOptions, parallel bool) error {
	w := watchTempFile(filepath.Join(d.dir, ".coral-tmp-"+objName+"-"), b.size)
	start := time.Now()
	rep := worker.Fetch(ctx, []worker.ArtifactSource{{URL: url, SHA256: b.sum}}, o)
	end := time.Now()
	w.stop()
	r.wall = end.Sub(start)
	it := rep.Items[0]
	if it.Status != report.StatusDownloaded {
		return fmt.Errorf("worker reported %s, want Downloaded: %s", it.Status, it.Message)
	}
	if it.Digest != "sha256:"+b.sum || it.SizeBytes != b.size {
		return fmt.Errorf("worker reported %s, %d bytes; want sha256:%s, %d", it.Digest, it.SizeBytes, b.sum, b.size)
	}
	if fi, err := os.Stat(filepath.Join(d.dir, objName)); err != nil || fi.Size() != b.size {
		return fmt.Errorf("the downloaded file is missing or short: %v", err)
	}
	if n := b.probe.bytes.Load(); n < b.size {
		return fmt.Errorf("only %d bytes came over the wire, want %d", n, b.size)
	}
	if w.gone.After(end) {
		w.gone = end // closed between the last tick and the return
	}
	last := b.probe.lastByte()
	p := &phases{}
	if !last.IsZero() && !w.gone.IsZero() && (!parallel || !w.firstPos.IsZero()) {
		p.ok = true
		p.transfer = last.Sub(start)
		// Events are dated to within a poll (2 ms) or a descheduling: clamp.
		if parallel {
			p.fsync = max(0, w.firstPos.Sub(last))
			p.rehash = max(0, w.gone.Sub(w.firstPos))
		} else {
			p.fsync = max(0, w.gone.Sub(last))
		}
		p.finish = max(0, end.Sub(w.gone))
	}
	r.phases = p
	return nil
}

func runHTTPWorker(ctx context.Context, b *bench, d *dest, r *result) error {
	h := &worker.HTTPFetcher{Client: &http.Client{Transport: &probeTransport{inner: http.DefaultTransport, p: b.probe}}}
	return b.runWorker(ctx, d, r, b.httpURL, fetchOpts(d.dir, h, nil), false)
}

func runS3Par(ctx context.Context, b *bench, d *dest, r *result) error {
	f, err := b.newFetcher(ctx)
	if err != nil {
		return err
	}
	f.PartSize, f.Concurrency = b.partSize, b.conc
	return b.runWorker(ctx, d, r, b.s3URL, fetchOpts(d.dir, nil, f), b.size > b.partSize && b.conc > 1)
}

func runS3Single(ctx context.Context, b *bench, d *dest, r *result) error {
	f, err := b.newFetcher(ctx)
	if err != nil {
		return err
	}
	f.Concurrency = 1
	return b.runWorker(ctx, d, r, b.s3URL, fetchOpts(d.dir, nil, f), false)
}

func runCurl(ctx context.Context, b *bench, d *dest, r *result) error {
	p := filepath.Join(d.dir, objName)
	cmd := exec.CommandContext(ctx, b.c.curl, "-sS", "--fail", "-o", p, b.httpURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	r.wall = time.Since(start)
	if err != nil {
		return fmt.Errorf("curl: %v: %s", err, stderr.String())
	}
	r.cpuChild = childCPU(cmd)
	if r.fsync, err = fsyncFile(p); err != nil {
		return err
	}
	return b.checkFile(p, r.round <= 1)
}

func runGoGet(ctx context.Context, b *bench, d *dest, r *result) error {
	p := filepath.Join(d.dir, objName)
	c := &http.Client{Transport: &probeTransport{inner: http.DefaultTransport, p: b.probe}}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.httpURL, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		resp.Body.Close()
		return err
	}
	_, err = io.CopyBuffer(f, resp.Body, make([]byte, mib))
	resp.Body.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	r.wall = time.Since(start)
	if err != nil {
		return err
	}
	if r.fsync, err = fsyncFile(p); err != nil {
		return err
	}
	return b.checkFile(p, r.round <= 1)
}

func runSDKFile(ctx context.Context, b *bench, d *dest, r *result) error {
	p := filepath.Join(d.dir, objName)
	start := time.Now()
	out, err := b.s3Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(objName)})
	if err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		out.Body.Close()
		return err
	}
	_, err = io.Copy(f, out.Body)
	out.Body.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	r.wall = time.Since(start)
	if err != nil {
		return err
	}
	if r.fsync, err = fsyncFile(p); err != nil {
		return err
	}
	return b.checkFile(p, r.round <= 1)
}

func runCurlNull(ctx context.Context, b *bench, _ *dest, r *result) error {
	cmd := exec.CommandContext(ctx, b.c.curl, "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}", b.httpURL)
	start := time.Now()
	out, err := cmd.Output()
	r.wall = time.Since(start)
	if err != nil {
		return fmt.Errorf("curl: %v", err)
	}
	r.cpuChild = childCPU(cmd)
	if n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); n != b.size {
		return fmt.Errorf("curl got %s bytes, want %d", out, b.size)
	}
	return nil
}

// discard hides io.Discard's ReadFrom (its small buffers) so copies use 1 MiB reads.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func runStore1(ctx context.Context, b *bench, _ *dest, r *result) error {
	start := time.Now()
	out, err := b.s3Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(objName)})
	if err != nil {
		return err
	}
	n, err := io.CopyBuffer(discard{}, out.Body, make([]byte, mib))
	out.Body.Close()
	r.wall = time.Since(start)
	if err != nil || n != b.size {
		return fmt.Errorf("got %d bytes, %v", n, err)
	}
	return nil
}

// runStoreRanged fetches the object as the worker's parallel path does, into nothing.
func runStoreRanged(ctx context.Context, b *bench, _ *dest, r *result) error {
	start := time.Now()
	parts := make(chan [2]int64)
	var total atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range b.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, mib)
			for p := range parts {
				rng := fmt.Sprintf("bytes=%d-%d", p[0], p[1])
				out, err := b.s3Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(objName), Range: &rng})
				if err == nil {
					var n int64
					n, err = io.CopyBuffer(discard{}, out.Body, buf)
					out.Body.Close()
					total.Add(n)
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for off := int64(0); off < b.size; off += b.partSize {
		parts <- [2]int64{off, min(off+b.partSize, b.size) - 1}
	}
	close(parts)
	wg.Wait()
	r.wall = time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	if total.Load() != b.size {
		return fmt.Errorf("got %d bytes, want %d", total.Load(), b.size)
	}
	return nil
}

// runDiskFloor writes the size from memory to a file and fsyncs it: what any
// durable download to this disk costs at least, at this moment.
func runDiskFloor(ctx context.Context, b *bench, d *dest, r *result) error {
	p := filepath.Join(d.dir, objName)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	start := time.Now()
	for left := b.size; left > 0; left -= int64(len(b.block)) {
		if _, err := f.Write(b.block[:min(int64(len(b.block)), left)]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	r.wall = time.Since(start)
	if r.fsync, err = fsyncFile(p); err != nil {
		return err
	}
	return b.checkFile(p, false)
}

func fsyncFile(p string) (time.Duration, error) {
	start := time.Now()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	err = f.Sync()
	f.Close()
	return time.Since(start), err
}

// checkFile verifies a reference's output (outside the timer): its size,
// and with full its sha256 (round 1 only: hashing 1 GiB costs seconds).
func (b *bench) checkFile(p string, full bool) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if !full {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Size() != b.size {
			return fmt.Errorf("%s: %d bytes, want %d", p, fi.Size(), b.size)
		}
		return nil
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, mib))
	if err != nil {
		return err
	}
	if n != b.size || hex.EncodeToString(h.Sum(nil)) != b.sum {
		return fmt.Errorf("%s: %d bytes, sha256 %x; want %d bytes, %s", p, n, h.Sum(nil), b.size, b.sum)
	}
	return nil
}

// ---------------------------------------------------------------- probes

// probe counts response body bytes and notes when the last body ended.
type probe struct {
	bytes atomic.Int64
	mu    sync.Mutex
	last  time.Time
}

func (p *probe) reset() {
	p.bytes.Store(0)
	p.mu.Lock()
	p.last = time.Time{}
	p.mu.Unlock()
}

func (p *probe) ended(t time.Time) {
	p.mu.Lock()
	if t.After(p.last) {
		p.last = t
	}
	p.mu.Unlock()
}

func (p *probe) lastByte() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

type probeTransport struct {
	inner http.RoundTripper
	p     *probe
}

func (t *probeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err == nil && resp.Body != nil {
		resp.Body = &probeBody{rc: resp.Body, p: t.p}
	}
	return resp, err
}

type probeBody struct {
	rc   io.ReadCloser
	p    *probe
	done bool
}

func (b *probeBody) Read(buf []byte) (int, error) {
	n, err := b.rc.Read(buf)
	b.p.bytes.Add(int64(n))
	if err != nil && !b.done {
		b.done = true
		b.p.ended(time.Now())
	}
	return n, err
}

func (b *probeBody) Close() error {
	if !b.done {
		b.done = true
		b.p.ended(time.Now())
	}
	return b.rc.Close()
}

// tempWatch follows the worker's temp file through /proc/self/fd: when its
// descriptor's offset first moves (the parallel path re-reads the file from 0
// to hash it; pwrite does not move it) and when it closes.
type tempWatch struct {
	prefix         string
	size           int64
	firstPos, gone time.Time
	quit, done     chan struct{}
	fd             string
	link           string
}

func watchTempFile(prefix string, size int64) *tempWatch {
	w := &tempWatch{prefix: prefix, size: size, quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// stop ends the watch with a last look (the tail after the close can be
// shorter than a tick, e.g. on a tmpfs).
func (w *tempWatch) stop() {
	close(w.quit)
	<-w.done
	w.poll(time.Now())
}

func (w *tempWatch) run() {
	defer close(w.done)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
			w.poll(time.Now()) // not the tick's time: a late tick would date events too early
		}
	}
}

func (w *tempWatch) poll(now time.Time) {
	if w.fd == "" {
		if !w.gone.IsZero() {
			return
		}
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, w.prefix) {
				w.fd, w.link = e.Name(), l
				break
			}
		}
		if w.fd == "" {
			return
		}
	}
	if l, err := os.Readlink("/proc/self/fd/" + w.fd); err != nil || l != w.link {
		w.gone, w.fd = now, ""
		return
	}
	if w.firstPos.IsZero() && fdPos(w.fd) > 0 {
		w.firstPos = now
	}
}

func fdPos(fd string) int64 {
	b, err := os.ReadFile("/proc/self/fdinfo/" + fd)
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "pos:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return -1
}

// cpuSample is the CPU time so far of this process, versitygw and the machine.
type cpuSample struct {
	at            time.Time
	self          float64
	vgw           float64
	total, idle   float64 // machine, ticks
	iowait, ncpus float64
}

const userHZ = 100

func sampleCPU(vgwPid int) cpuSample {
	s := cpuSample{at: time.Now(), ncpus: float64(runtime.NumCPU())}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = tv(ru.Utime) + tv(ru.Stime)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", vgwPid)); err == nil {
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				s.vgw = (u + st) / userHZ
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(l)
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			s.total += v
			switch i {
			case 4:
				s.idle = v
			case 5:
				s.iowait = v
			}
		}
	}
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func (s cpuSample) sub(before cpuSample, r *result) {
	r.cpuSelf = s.self - before.self
	r.cpuVgw = s.vgw - before.vgw
	if dt := s.total - before.total; dt > 0 {
		idle, io := s.idle-before.idle, s.iowait-before.iowait
		r.busy = (dt - idle - io) / dt
		r.iowait = io / dt
		wall := s.at.Sub(before.at).Seconds()
		ours := (r.cpuSelf + r.cpuChild + r.cpuVgw) / wall
		r.others = max(0, r.busy*s.ncpus-ours)
	}
}

func childCPU(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return tv(ru.Utime) + tv(ru.Stime)
	}
	return 0
}

// ---------------------------------------------------------------- output

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func (b *bench) printRun(r *result) {
	fs := "       -"
	if r.fsync > 0 {
		fs = fmt.Sprintf("%6.2f s", r.fsync.Seconds())
	}
	ph := ""
	if p := r.phases; p != nil {
		if p.ok {
			ph = fmt.Sprintf("%.2f / %.2f / %.2f / %.2f s", p.transfer.Seconds(), p.fsync.Seconds(), p.rehash.Seconds(), p.finish.Seconds())
		} else {
			ph = "(not resolved)"
		}
	}
	fmt.Printf("%-5d %-24s %7.2f s %6.0f %8s %6.2f s %6.2f s %4.0f%% %6.2f %5.0f%%  %s\n",
		r.round, r.key, r.wall.Seconds(), mbps(b.size, r.wall), fs, r.cpuSelf+r.cpuChild, r.cpuVgw, 100*r.busy, r.others, 100*r.iowait, ph)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// series returns, per round, f of the run with key (rounds without it are skipped).
func (b *bench) series(key string, f func(*result) float64) []float64 {
	var out []float64
	for _, r := range b.results {
		if r.key == key {
			out = append(out, f(r))
		}
	}
	return out
}

func wallOf(r *result) float64    { return r.wall.Seconds() }
func durableOf(r *result) float64 { return (r.wall + r.fsync).Seconds() }

// ratio of two runs: of the medians, and the median of the per-round ratios.
func (b *bench) ratio(num, den string, fn, fd func(*result) float64) (float64, float64) {
	ns, ds := b.series(num, fn), b.series(den, fd)
	var per []float64
	for i := range min(len(ns), len(ds)) {
		per = append(per, ns[i]/ds[i])
	}
	return median(ns) / median(ds), median(per)
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

func (b *bench) printSummary() {
	fmt.Printf("\n== medians over %d rounds (%d MiB = %.0f MB per download) ==\n", b.c.rounds, b.c.sizeMiB, float64(b.size)/1e6)
	line := func(label string, xs []float64) {
		m := median(xs)
		fmt.Printf("  %-44s %7.2f s  %5.0f MB/s   (min %.2f, max %.2f)\n", label, m, float64(b.size)/1e6/m, slices.Min(xs), slices.Max(xs))
	}
	for _, d := range b.dests {
		n := d.name
		fmt.Printf("%s (%s):\n", n, d.fs)
		line("http  worker.Fetch", b.series(n+" http worker", wallOf))
		line("http  curl -o", b.series(n+" http curl -o", wallOf))
		line("http  curl -o, then fsync", b.series(n+" http curl -o", durableOf))
		if xs := b.series(n+" http go GET", wallOf); len(xs) > 0 {
			line("http  Go GET → file (worker's loop, no hash)", xs)
		}
		line(fmt.Sprintf("s3    worker.Fetch parallel (%d MiB × %d)", b.partSize/mib, b.conc), b.series(n+" s3 worker par", wallOf))
		line("s3    worker.Fetch single stream", b.series(n+" s3 worker 1", wallOf))
		line("s3    sdk GetObject io.Copy to file", b.series(n+" s3 sdk GetObject", wallOf))
		line("s3    sdk GetObject io.Copy, then fsync", b.series(n+" s3 sdk GetObject", durableOf))
		if n == "disk" {
			line("floor: write from memory, then fsync", b.series("- disk write+fsync", durableOf))
			line("floor: write from memory (no fsync)", b.series("- disk write+fsync", wallOf))
		}
		for _, k := range []string{"http worker", "s3 worker par", "s3 worker 1"} {
			var tr, fs, rh, fi []float64
			for _, r := range b.results {
				if r.key == n+" "+k && r.phases != nil && r.phases.ok {
					tr, fs = append(tr, r.phases.transfer.Seconds()), append(fs, r.phases.fsync.Seconds())
					rh, fi = append(rh, r.phases.rehash.Seconds()), append(fi, r.phases.finish.Seconds())
				}
			}
			if len(tr) > 0 {
				fmt.Printf("  phases of %-16s transfer %5.2f s, fsync %5.2f s, re-hash %5.2f s, rename+manifest %5.2f s\n",
					k+":", median(tr), median(fs), median(rh), median(fi))
			}
		}
	}
	fmt.Println("ceilings without a file (medians):")
	line("http  curl -o /dev/null", b.series("- http curl >/dev/null", wallOf))
	line("s3    store, 1 stream → discard", b.series("- s3 store 1 stream", wallOf))
	line(fmt.Sprintf("s3    store, %d MiB × %d ranged → discard", b.partSize/mib, b.conc), b.series("- s3 store ranged", wallOf))
	sr, srp := b.ratio("- s3 store 1 stream", "- s3 store ranged", wallOf, wallOf)
	fmt.Printf("  the store's own parallel speed-up: %.2f× (median of per-round %.2f×)\n", sr, srp)
	for _, k := range []string{"- s3 store 1 stream", "- s3 store ranged"} {
		fmt.Printf("  %-20s CPU: bench %.2f + versitygw %.2f cores, others %.2f cores, machine busy %.0f%% of %d CPUs\n", k[2:]+":",
			median(b.series(k, func(r *result) float64 { return r.cpuSelf / r.wall.Seconds() })),
			median(b.series(k, func(r *result) float64 { return r.cpuVgw / r.wall.Seconds() })),
			median(b.series(k, func(r *result) float64 { return r.others })),
			100*median(b.series(k, func(r *result) float64 { return r.busy })), runtime.NumCPU())
	}

	fmt.Println("\n== ratios (of the medians; median of the per-round ratios in brackets) ==")
	pr := func(n, label string, r, per float64, note string) {
		fmt.Printf("%-5s %-36s %5.2f× (%.2f×)  %s\n", n, label, r, per, note)
	}
	noRehash := func(r *result) float64 {
		if r.phases == nil || !r.phases.ok {
			return r.wall.Seconds()
		}
		return (r.wall - r.phases.rehash).Seconds()
	}
	for _, d := range b.dests {
		n := d.name
		r, p := b.ratio(n+" http worker", n+" http curl -o", wallOf, wallOf)
		pr(n, "http  worker / curl -o", r, p, "aim ≤ 1.05×: "+verdict(r <= 1.05))
		r, p = b.ratio(n+" http worker", n+" http curl -o", wallOf, durableOf)
		pr(n, "http  worker / (curl -o + fsync)", r, p, "same durability as the worker")
		if len(b.series(n+" http go GET", wallOf)) > 0 {
			r, p = b.ratio(n+" http worker", n+" http go GET", wallOf, durableOf)
			pr(n, "http  worker / Go GET (no hash)", r, p, "the worker's inline sha256 and bookkeeping")
			r, p = b.ratio(n+" http go GET", n+" http curl -o", wallOf, wallOf)
			pr(n, "http  Go GET / curl -o", r, p, "Go's client vs curl, neither hashes")
		}
		r, p = b.ratio(n+" s3 worker 1", n+" s3 worker par", wallOf, wallOf)
		pr(n, "s3    single / parallel (speed-up)", r, p, "aim ≥ 1.5×: "+verdict(r >= 1.5))
		r, p = b.ratio(n+" s3 worker 1", n+" s3 worker par", wallOf, noRehash)
		pr(n, "s3    single / (parallel − re-hash)", r, p, "estimate: the speed-up if the hash overlapped the download")
		r, p = b.ratio(n+" s3 worker par", n+" s3 sdk GetObject", wallOf, durableOf)
		pr(n, "s3    parallel / (sdk + fsync)", r, p, "")
		r, p = b.ratio(n+" s3 worker 1", n+" s3 sdk GetObject", wallOf, durableOf)
		pr(n, "s3    single / (sdk + fsync)", r, p, "")
		if n == "disk" {
			for _, k := range []struct{ key, label string }{
				{"http worker", "http  worker"}, {"http curl -o", "http  curl -o + fsync"},
				{"s3 worker par", "s3    parallel"}, {"s3 worker 1", "s3    single"},
			} {
				f := wallOf
				if k.key == "http curl -o" {
					f = durableOf
				}
				r, p = b.ratio(n+" "+k.key, "- disk write+fsync", f, durableOf)
				pr(n, k.label+" / disk floor", r, p, "floor: write from memory + fsync, same round")
			}
		}
	}
	fmt.Println("\n(cpu-us: CPU s of this process + curl; cpu-vgw: of versitygw; others: cores busy with other work on the")
	fmt.Println(" machine during the run; iowait: share of all CPUs waiting for the disk. Phases come from a probe on the")
	fmt.Println(" HTTP transport (last body byte) and the worker's temp-file descriptor (/proc/self/fdinfo).)")
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("load average at the end: %s\n", strings.Join(strings.Fields(string(load))[:3], " "))
}
