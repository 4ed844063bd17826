package identity

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

var (
	// ErrUnknownRange is returned for a number outside every range of the
	// numbering registry: not an allocated mobile number.
	ErrUnknownRange = errors.New("identity: phone number is outside the numbering plan")
	// ErrVirtualNumber is returned for a number in a range whose operator is
	// on the deny list (virtual numbers, not a SIM).
	ErrVirtualNumber = errors.New("identity: phone number belongs to a virtual operator")
	// ErrBadRegistry is returned when a numbering registry file cannot be
	// read whole: a malformed row (the error names its line), overlapping
	// ranges, no ranges at all, or a limit passed. Nothing is loaded then.
	ErrBadRegistry = errors.New("identity: numbering registry is malformed")
	// ErrRegistryOptions is returned for invalid RegistryOptions.
	ErrRegistryOptions = errors.New("identity: invalid numbering registry options")
)

const (
	// subscriberSpan is 10^7: a number is code(3 digits) and 7 more.
	subscriberSpan = 10_000_000
	// maxRegistryLine bounds one line of a registry file, in bytes.
	maxRegistryLine = 4096
)

// RegistryOptions configures LoadRegistry.
type RegistryOptions struct {
	// CountryCode is the country calling code the registry's numbers
	// belong to. Default: 7 (the Russian registry's format).
	CountryCode int
	// Region is the ISO 3166 region the registry covers within its country
	// code: numbers libphonenumber places elsewhere are not its business.
	// Default: "RU" when CountryCode is 7 (Kazakhstan shares +7, with its
	// own 6xx and 7xx codes), else "" (the whole country code).
	Region string
	// DenyOperators lists virtual operators: a range whose operator name
	// contains one of these, ignoring case, is refused with
	// ErrVirtualNumber. Substrings, so that `Виртуальные номера` matches
	// `ООО "Виртуальные номера"` whatever the legal form and quoting of the
	// regulator's spelling. An empty entry is an error (it would match
	// every operator). Default: none.
	DenyOperators []string
	// MaxRanges bounds the rows read. Default: 1,000,000 (the full DEF
	// registry has under 100,000).
	MaxRanges int
}

func (o RegistryOptions) withDefaults() (RegistryOptions, error) {
	if o.CountryCode == 0 {
		o.CountryCode = 7
	}
	if o.CountryCode < 1 || o.CountryCode > 999 {
		return o, fmt.Errorf("identity: country code %d: %w", o.CountryCode, ErrRegistryOptions)
	}
	if o.Region == "" && o.CountryCode == 7 {
		o.Region = "RU"
	}
	if o.Region != "" && (len(o.Region) != 2 || o.Region[0] < 'A' || o.Region[0] > 'Z' || o.Region[1] < 'A' || o.Region[1] > 'Z') {
		return o, fmt.Errorf("identity: region %q is not two capital letters: %w", o.Region, ErrRegistryOptions)
	}
	if o.MaxRanges == 0 {
		o.MaxRanges = 1_000_000
	}
	if o.MaxRanges < 0 {
		return o, fmt.Errorf("identity: MaxRanges %d: %w", o.MaxRanges, ErrRegistryOptions)
	}
	deny := make([]string, len(o.DenyOperators))
	for i, d := range o.DenyOperators {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" {
			return o, fmt.Errorf("identity: empty entry %d in DenyOperators: %w", i, ErrRegistryOptions)
		}
		deny[i] = d
	}
	o.DenyOperators = deny
	return o, nil
}

// Range is one row of the numbering registry: the numbers
// +CC Code From … +CC Code To.
type Range struct {
	// Code is the three-digit DEF (or ABC) code: 900.
	Code int
	// From and To are the first and last subscriber numbers, 7 digits.
	From, To int
	// Capacity is To-From+1, as the registry states it.
	Capacity int
	// Operator is the operator the range is allocated to.
	Operator string
	// Region is the region the range serves.
	Region string
	// INN is the operator's taxpayer number, where the file has it.
	INN string
	// Virtual reports that Operator matched RegistryOptions.DenyOperators.
	Virtual bool
	// Line is the line of the file the range was read from.
	Line int
}

// Registry is a loaded numbering registry of one country: ranges sorted
// and non-overlapping, looked up by binary search. It is immutable and
// safe for concurrent use.
type Registry struct {
	cc     int
	region string
	first  []uint64 // national number of each range's first number, ascending
	last   []uint64 // … and of its last
	ranges []Range
}

// LoadRegistry reads a numbering registry in the format of the Russian
// regulator's DEF-9xx.csv (UTF-8): a header row, then rows of
//
//	АВС/ DEF;От;До;Емкость;Оператор;Регион[;ИНН]
//
// separated by ";" only: operator names hold commas and quotes
// (ПАО "Мобильные ТелеСистемы"), so "," is not a separator and quotes are
// kept as they are, except that a field wrapped whole in double quotes
// loses them (with "" read as "), as a spreadsheet would write it.
// Whitespace around fields, a byte-order mark, CRLF line ends and blank
// lines are accepted. Any other defect fails the load with the line number
// (ErrBadRegistry): a regulator file with a bad row must not silently
// shrink the plan.
func LoadRegistry(r io.Reader, opts RegistryOptions) (*Registry, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxRegistryLine)
	var (
		ranges []Range
		line   int
		header bool
		names  = map[string]string{} // interns operator and region names; as bounded as the rows
		fields [8]string
		intern = func(s string) string {
			if v, ok := names[s]; ok {
				return v
			}
			names[s] = s
			return s
		}
	)
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\ufeff"))
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("identity: numbering registry line %d: not UTF-8: %w", line, ErrBadRegistry)
		}
		n := splitFields(string(b), fields[:])
		if !header {
			// The header names the columns; its first must not be a code.
			if n < 6 || isDigits(fields[0]) {
				return nil, fmt.Errorf("identity: numbering registry line %d: want the header row (АВС/ DEF;От;До;Емкость;Оператор;Регион[;ИНН]): %w", line, ErrBadRegistry)
			}
			header = true
			continue
		}
		if len(ranges) >= opts.MaxRanges {
			return nil, fmt.Errorf("identity: numbering registry line %d: more than %d ranges: %w", line, opts.MaxRanges, ErrBadRegistry)
		}
		rg, err := parseRange(fields[:], n)
		if err != nil {
			return nil, fmt.Errorf("identity: numbering registry line %d: %s: %w", line, err.Error(), ErrBadRegistry)
		}
		rg.Line = line
		rg.Operator = intern(rg.Operator)
		rg.Region = intern(rg.Region)
		low := strings.ToLower(rg.Operator)
		for _, d := range opts.DenyOperators {
			if strings.Contains(low, d) {
				rg.Virtual = true
				break
			}
		}
		ranges = append(ranges, rg)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("identity: numbering registry line %d: longer than %d bytes: %w", line+1, maxRegistryLine, ErrBadRegistry)
		}
		return nil, fmt.Errorf("identity: numbering registry: read: %w", err)
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("identity: numbering registry has no ranges: %w", ErrBadRegistry)
	}
	return newRegistry(ranges, opts)
}

// newRegistry sorts ranges and indexes them; overlapping ranges fail with
// both lines named.
func newRegistry(ranges []Range, opts RegistryOptions) (*Registry, error) {
	slices.SortFunc(ranges, func(a, b Range) int {
		if a.Code != b.Code {
			return a.Code - b.Code
		}
		return a.From - b.From
	})
	reg := &Registry{
		cc:     opts.CountryCode,
		region: opts.Region,
		first:  make([]uint64, len(ranges)),
		last:   make([]uint64, len(ranges)),
		ranges: ranges,
	}
	for i, rg := range ranges {
		reg.first[i] = uint64(rg.Code)*subscriberSpan + uint64(rg.From)
		reg.last[i] = uint64(rg.Code)*subscriberSpan + uint64(rg.To)
		if i > 0 && reg.first[i] <= reg.last[i-1] {
			return nil, fmt.Errorf("identity: numbering registry line %d: range %d %07d-%07d overlaps line %d: %w",
				rg.Line, rg.Code, rg.From, rg.To, ranges[i-1].Line, ErrBadRegistry)
		}
	}
	return reg, nil
}

// splitFields splits s on ";" into dst, trimmed and unquoted, and returns
// how many fields s has (which may exceed len(dst); those are not stored).
func splitFields(s string, dst []string) int {
	n := 0
	for {
		f, rest, more := strings.Cut(s, ";")
		if n < len(dst) {
			f = strings.TrimSpace(f)
			if len(f) >= 2 && f[0] == '"' && f[len(f)-1] == '"' {
				f = strings.ReplaceAll(f[1:len(f)-1], `""`, `"`)
			}
			dst[n] = f
		}
		n++
		if !more {
			return n
		}
		s = rest
	}
}

// parseRange reads one data row's n fields.
func parseRange(f []string, n int) (Range, error) {
	if n != 6 && n != 7 {
		return Range{}, fmt.Errorf("%d fields, want 6 or 7", n)
	}
	num := func(name, s string, digits int) (int, error) {
		if !isDigits(s) || len(s) > digits {
			return 0, fmt.Errorf("%s %q is not a number of up to %d digits", name, s, digits)
		}
		v, _ := strconv.Atoi(s)
		return v, nil
	}
	code, err := num("code", f[0], 3)
	if err != nil {
		return Range{}, err
	}
	if code < 100 {
		return Range{}, fmt.Errorf("code %q is not three digits", f[0])
	}
	from, err := num("from", f[1], 7)
	if err != nil {
		return Range{}, err
	}
	to, err := num("to", f[2], 7)
	if err != nil {
		return Range{}, err
	}
	if from > to {
		return Range{}, fmt.Errorf("from %d is after to %d", from, to)
	}
	capacity, err := num("capacity", f[3], 8)
	if err != nil {
		return Range{}, err
	}
	if capacity != to-from+1 {
		return Range{}, fmt.Errorf("capacity %d, but the range holds %d numbers", capacity, to-from+1)
	}
	rg := Range{Code: code, From: from, To: to, Capacity: capacity, Operator: f[4], Region: f[5]}
	if rg.Operator == "" {
		return Range{}, errors.New("no operator")
	}
	if n == 7 {
		if rg.INN = f[6]; rg.INN != "" && !isDigits(rg.INN) {
			return Range{}, fmt.Errorf("INN %q is not a number", rg.INN)
		}
	}
	return rg, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CountryCode returns the country calling code the registry covers.
func (r *Registry) CountryCode() int { return r.cc }

// Region returns the region the registry covers within its country code
// ("" for all of it).
func (r *Registry) Region() string { return r.region }

// covers reports whether p is a number of the registry's country (and
// region, where it has one).
func (r *Registry) covers(p Phone) bool {
	return p.CountryCode == r.cc && (r.region == "" || p.Region == r.region)
}

// Len returns the number of ranges.
func (r *Registry) Len() int { return len(r.ranges) }

// Ranges returns a copy of the ranges, sorted by code and first number.
func (r *Registry) Ranges() []Range { return slices.Clone(r.ranges) }

// Check finds p's range. A number of another country or region, or
// outside every range, gets ErrUnknownRange; a number in a range of a denied operator
// gets the range and ErrVirtualNumber. It allocates nothing.
func (r *Registry) Check(p Phone) (Range, error) {
	if !r.covers(p) {
		return Range{}, ErrUnknownRange
	}
	n := p.National
	// The last range whose first number is <= n.
	lo, hi := 0, len(r.first)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.first[m] <= n {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 || n > r.last[lo-1] {
		return Range{}, ErrUnknownRange
	}
	rg := r.ranges[lo-1]
	if rg.Virtual {
		return rg, ErrVirtualNumber
	}
	return rg, nil
}

// Plan holds the numbering registry in force and lets it be replaced while
// lookups run: readers Load an immutable *Registry through an atomic
// pointer, a reload builds a whole new one and swaps it in. It covers one
// country (the registry's country code and region); numbers of other
// countries, and every number while no registry is loaded, pass its check: for them ParsePhone's
// libphonenumber check (valid, mobile) is the plan check.
type Plan struct {
	opts RegistryOptions
	cur  atomic.Pointer[Registry]
}

// NewPlan returns a Plan with no registry loaded; ReloadFile reads files
// with opts. Errors: ErrRegistryOptions.
func NewPlan(opts RegistryOptions) (*Plan, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Plan{opts: opts}, nil
}

// Load returns the registry in force, or nil when none is loaded.
func (p *Plan) Load() *Registry { return p.cur.Load() }

// Swap puts r in force and returns the registry it replaces (nil for none).
// Lookups already running finish on the old one.
func (p *Plan) Swap(r *Registry) *Registry { return p.cur.Swap(r) }

// ReloadFile loads the registry at path with the Plan's options and puts
// it in force only if it loaded whole; on any error the registry in force
// stays. It returns the new registry.
func (p *Plan) ReloadFile(path string) (*Registry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: numbering registry: %w", err)
	}
	defer f.Close()
	r, err := LoadRegistry(f, p.opts)
	if err != nil {
		return nil, fmt.Errorf("identity: load %q: %w", path, err)
	}
	p.cur.Store(r)
	return r, nil
}

// Check checks p against the registry in force: ErrUnknownRange or
// ErrVirtualNumber as Registry.Check says. A number of a country (or
// region) the registry does not cover, or any number while none is loaded, passes with
// the zero Range. It allocates nothing.
func (p *Plan) Check(ph Phone) (Range, error) {
	r := p.cur.Load()
	if r == nil || !r.covers(ph) {
		return Range{}, nil
	}
	return r.Check(ph)
}
