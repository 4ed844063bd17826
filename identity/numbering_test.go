package identity

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleHeader = "АВС/ DEF;От;До;Емкость;Оператор;Регион;ИНН\n"

var testDeny = RegistryOptions{DenyOperators: []string{"виртуальные НОМЕРА"}}

func loadSample(t testing.TB) *Registry {
	t.Helper()
	f, err := os.Open("testdata/def-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := LoadRegistry(f, testDeny)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func phone7(national uint64) Phone { return Phone{CountryCode: 7, National: national, Region: "RU"} }

func TestLoadRegistry(t *testing.T) {
	r := loadSample(t)
	if r.Len() != 7 || r.CountryCode() != 7 || r.Region() != "RU" {
		t.Fatalf("sample: %d ranges of +%d, want 7 of +7", r.Len(), r.CountryCode())
	}
	rs := r.Ranges()
	if rs[0].Code != 900 || rs[0].From != 0 || rs[0].To != 999999 || rs[0].Operator != `ООО "Т2 Мобайл"` ||
		rs[0].Region != "г. Москва и Московская область" || rs[0].INN != "7743895280" || rs[0].Line != 2 || rs[0].Virtual {
		t.Fatalf("first range: %+v", rs[0])
	}

	ok := func(name, text string, n int) {
		t.Helper()
		r, err := LoadRegistry(strings.NewReader(text), RegistryOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Len() != n {
			t.Fatalf("%s: %d ranges, want %d", name, r.Len(), n)
		}
	}
	ok("bom, crlf, blank lines, spaces", "\ufeff"+strings.ReplaceAll(sampleHeader, "\n", "\r\n")+
		"\r\n 900 ; 0000000 ; 0000099 ; 100 ; ООО \"Т2 Мобайл\" ; Демо ; 7743895280 \r\n\r\n", 1)
	ok("six columns, short numbers", "АВС/ DEF;От;До;Емкость;Оператор;Регион\n900;0;99;100;МТС;Демо\n", 1)
	ok("quoted fields", sampleHeader+`"900";"0";"99";"100";"ПАО ""МегаФон""";"Демо";""`+"\n", 1)
	ok("unsorted rows", sampleHeader+"901;0;9;10;Б;Р;\n900;100;199;100;А;Р;\n900;0;99;100;А;Р;\n", 3)

	bad := func(name, text string, line int) {
		t.Helper()
		r, err := LoadRegistry(strings.NewReader(text), RegistryOptions{})
		if !errors.Is(err, ErrBadRegistry) || r != nil {
			t.Fatalf("%s: %v, %v; want ErrBadRegistry", name, r, err)
		}
		if line > 0 && !strings.Contains(err.Error(), "line "+itoa(line)+":") {
			t.Fatalf("%s: %v; want line %d named", name, err, line)
		}
	}
	bad("empty", "", 0)
	bad("header only", sampleHeader, 0)
	bad("blank", "\n\n  \n", 0)
	bad("no header", "900;0;99;100;МТС;Демо\n", 1)
	bad("code not a number", sampleHeader+"900;0;99;100;А;Р;\n9x0;0;99;100;А;Р;\n", 3)
	bad("code of two digits", sampleHeader+"90;0;99;100;А;Р;\n", 2)
	bad("from after to", sampleHeader+"900;100;99;0;А;Р;\n", 2)
	bad("to of 8 digits", sampleHeader+"900;0;10000000;10000001;А;Р;\n", 2)
	bad("wrong capacity", sampleHeader+"900;0;99;101;А;Р;\n", 2)
	bad("no operator", sampleHeader+"900;0;99;100;;Р;\n", 2)
	bad("too few fields", sampleHeader+"900;0;99;100;А\n", 2)
	bad("too many fields", sampleHeader+"900;0;99;100;А;Р;1;2\n", 2)
	bad("comma separated", sampleHeader+"900,0,99,100,А,Р\n", 2)
	bad("bad INN", sampleHeader+"900;0;99;100;А;Р;ИНН\n", 2)
	bad("negative", sampleHeader+"900;-1;99;101;А;Р;\n", 2)
	bad("overlap", sampleHeader+"900;0;99;100;А;Р;\n900;50;149;100;Б;Р;\n", 3)
	bad("same range twice", sampleHeader+"900;0;99;100;А;Р;\n900;0;99;100;А;Р;\n", 3)
	bad("not utf-8", sampleHeader+"900;0;99;100;\xff;Р;\n", 2)
	bad("line too long", sampleHeader+"900;0;99;100;"+strings.Repeat("А", maxRegistryLine)+";Р;\n", 2)

	if _, err := LoadRegistry(strings.NewReader(sampleHeader+"900;0;9;10;А;Р;\n900;10;19;10;А;Р;\n"), RegistryOptions{MaxRanges: 1}); !errors.Is(err, ErrBadRegistry) {
		t.Fatalf("MaxRanges 1, two rows: %v", err)
	}
	for _, o := range []RegistryOptions{{DenyOperators: []string{" "}}, {CountryCode: -1}, {CountryCode: 1000}, {MaxRanges: -1}, {Region: "ru"}, {Region: "RUS"}} {
		if _, err := LoadRegistry(strings.NewReader(sampleHeader+"900;0;9;10;А;Р;\n"), o); !errors.Is(err, ErrRegistryOptions) {
			t.Fatalf("options %+v: %v, want ErrRegistryOptions", o, err)
		}
		if _, err := NewPlan(o); !errors.Is(err, ErrRegistryOptions) {
			t.Fatalf("NewPlan(%+v): %v, want ErrRegistryOptions", o, err)
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestRegistryCheck(t *testing.T) {
	r := loadSample(t)
	check := func(national uint64, want error, operator string) {
		t.Helper()
		rg, err := r.Check(phone7(national))
		if !errors.Is(err, want) {
			t.Fatalf("Check(%d) = %+v, %v; want %v", national, rg, err, want)
		}
		if rg.Operator != operator {
			t.Fatalf("Check(%d) = operator %q, want %q", national, rg.Operator, operator)
		}
	}
	check(9000000000, nil, `ООО "Т2 Мобайл"`) // first number of the first range
	check(9000000001, nil, `ООО "Т2 Мобайл"`)
	check(9000999999, nil, `ООО "Т2 Мобайл"`) // its last
	check(9001000000, nil, `ООО "Т2 Мобайл"`) // the next range, adjacent
	check(9001099999, nil, `ООО "Т2 Мобайл"`)
	check(9001100000, ErrUnknownRange, "") // just after
	check(9030234567, nil, `ПАО "ВымпелКом"`)
	check(9122000000, nil, `ПАО "Мобильные ТелеСистемы"`)
	check(9121999999, ErrUnknownRange, "") // just before
	check(9219999999, nil, `ПАО "МегаФон"`)
	check(9220000000, ErrUnknownRange, "")
	check(9585000000, ErrVirtualNumber, `ООО "Виртуальные номера"`)
	check(9585099999, ErrVirtualNumber, `ООО "Виртуальные номера"`)
	check(9585100000, nil, `ООО "Т2 Мобайл"`)
	check(8999999999, ErrUnknownRange, "") // before every range
	check(9999999999, ErrUnknownRange, "") // after every range
	check(0, ErrUnknownRange, "")
	check(^uint64(0), ErrUnknownRange, "")
	if _, err := r.Check(Phone{CountryCode: 1, National: 9000000001, Region: "US"}); !errors.Is(err, ErrUnknownRange) {
		t.Fatalf("Check of +1: %v, want ErrUnknownRange", err)
	}
	if _, err := r.Check(Phone{CountryCode: 7, National: 9000000001, Region: "KZ"}); !errors.Is(err, ErrUnknownRange) {
		t.Fatalf("Check of a +7 number in KZ: %v, want ErrUnknownRange", err)
	}

	// Parsed numbers come to Check with the same national number.
	p, err := ParsePhone("8 (958) 500-12-34", []int{7})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Check(p); !errors.Is(err, ErrVirtualNumber) {
		t.Fatalf("Check(%s) = %v, want ErrVirtualNumber", p.E164, err)
	}
}

func TestRegistryCheckAllocs(t *testing.T) {
	r := loadSample(t)
	plan, err := NewPlan(testDeny)
	if err != nil {
		t.Fatal(err)
	}
	plan.Swap(r)
	phones := []Phone{phone7(9000000001), phone7(9220000000), phone7(9585000001), {CountryCode: 44, National: 7400123456, Region: "GB"}}
	if n := testing.AllocsPerRun(100, func() {
		for _, p := range phones {
			_, _ = r.Check(p)
			_, _ = plan.Check(p)
		}
	}); n != 0 {
		t.Fatalf("Check allocates %v times per run, want 0", n)
	}
}

// TestNumberingSample keeps the demo sample loadable and covering the
// numbers docs/identity.md names.
func TestNumberingSample(t *testing.T) {
	plan, err := NewPlan(RegistryOptions{DenyOperators: []string{"Виртуальные номера"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.ReloadFile("numbering-sample.csv"); err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]error{
		"+7 900 000-00-01": nil,
		"+7 900 000-00-02": nil,
		"+7 900 000-00-03": nil,
		"+7 903 000-00-01": nil,
		"+7 912 000-00-01": nil,
		"+7 921 000-00-01": nil,
		"+7 958 500-00-01": ErrVirtualNumber,
		"+7 999 000-00-01": ErrUnknownRange,
	} {
		p, err := ParsePhone(raw, []int{7})
		if err != nil {
			t.Fatalf("ParsePhone(%q): %v", raw, err)
		}
		if _, err := plan.Check(p); !errors.Is(err, want) {
			t.Fatalf("demo %s: %v, want %v", raw, err, want)
		}
	}
}

func TestPlanReload(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "def.csv")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(good, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := NewPlan(testDeny)
	if err != nil {
		t.Fatal(err)
	}
	p := phone7(9000000001)
	other := phone7(9030234567)

	// Nothing loaded: every number passes.
	if rg, err := plan.Check(p); err != nil || rg != (Range{}) || plan.Load() != nil {
		t.Fatalf("empty plan: %+v, %v", rg, err)
	}
	if _, err := plan.ReloadFile(filepath.Join(dir, "missing.csv")); !errors.Is(err, os.ErrNotExist) || plan.Load() != nil {
		t.Fatalf("missing file: %v", err)
	}

	write(sampleHeader + "900;0;999999;1000000;ООО \"Т2 Мобайл\";Москва;\n")
	first, err := plan.ReloadFile(good)
	if err != nil || plan.Load() != first {
		t.Fatalf("first load: %v", err)
	}
	if _, err := plan.Check(p); err != nil {
		t.Fatalf("after first load: %v", err)
	}
	if _, err := plan.Check(other); !errors.Is(err, ErrUnknownRange) {
		t.Fatalf("903 after first load: %v", err)
	}
	// Other countries, and Kazakhstan's share of +7, pass the plan check.
	if _, err := plan.Check(Phone{E164: "+447400123456", CountryCode: 44, National: 7400123456, Region: "GB"}); err != nil {
		t.Fatalf("+44: %v", err)
	}
	kz, err := ParsePhone("+7 701 123 4567", []int{7})
	if err != nil {
		t.Fatal(err)
	}
	if rg, err := plan.Check(kz); err != nil || rg != (Range{}) {
		t.Fatalf("%s (%s): %+v, %v; want a pass", kz.E164, kz.Region, rg, err)
	}

	// A file with a bad row keeps the old registry.
	write(sampleHeader + "903;0;999999;1000000;ПАО \"ВымпелКом\";Москва;\n900;0;999999;999;ООО \"Т2 Мобайл\";Москва;\n")
	if r, err := plan.ReloadFile(good); !errors.Is(err, ErrBadRegistry) || r != nil || !strings.Contains(err.Error(), "line 3:") {
		t.Fatalf("bad reload: %v, %v", r, err)
	}
	if plan.Load() != first {
		t.Fatal("a bad file replaced the registry in force")
	}
	if _, err := plan.Check(other); !errors.Is(err, ErrUnknownRange) {
		t.Fatalf("903 after bad reload: %v", err)
	}

	// A good one replaces it.
	write(sampleHeader + "903;0;999999;1000000;ПАО \"ВымпелКом\";Москва;\n")
	second, err := plan.ReloadFile(good)
	if err != nil || plan.Load() != second {
		t.Fatalf("second load: %v", err)
	}
	if _, err := plan.Check(other); err != nil {
		t.Fatalf("903 after second load: %v", err)
	}
	if _, err := plan.Check(p); !errors.Is(err, ErrUnknownRange) {
		t.Fatalf("900 after second load: %v", err)
	}
	if old := plan.Swap(first); old != second {
		t.Fatal("Swap did not return the registry it replaced")
	}
	if plan.Load() != first {
		t.Fatal("Swap did not put the registry in force")
	}
}

func TestPlanConcurrentReload(t *testing.T) {
	plan, err := NewPlan(testDeny)
	if err != nil {
		t.Fatal(err)
	}
	plan.Swap(loadSample(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if _, err := plan.ReloadFile("testdata/def-sample.csv"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 5000 {
		if _, err := plan.Check(phone7(9000000001)); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

func FuzzLoadRegistry(f *testing.F) {
	sample, err := os.ReadFile("testdata/def-sample.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(sample))
	f.Add("")
	f.Add(sampleHeader)
	f.Add("\ufeff" + sampleHeader + "900;0;99;100;А;Р;\r\n")
	f.Add(sampleHeader + "900;0;99;100;А;Р;\n900;50;149;100;Б;Р;\n")
	f.Add(sampleHeader + `"900";"0";"99";"100";"ПАО ""МегаФон""";"Р";""` + "\n")
	f.Add(sampleHeader + "900;100;99;0;А;Р;\n")
	f.Add(sampleHeader + "999;9999999;9999999;1;А;Р;1\n")
	f.Fuzz(func(t *testing.T, text string) {
		r, err := LoadRegistry(strings.NewReader(text), testDeny)
		if err != nil {
			if !errors.Is(err, ErrBadRegistry) || r != nil {
				t.Fatalf("error %v with registry %v", err, r)
			}
			return
		}
		rs := r.Ranges()
		if len(rs) == 0 {
			t.Fatal("loaded with no ranges")
		}
		for i, rg := range rs {
			if rg.Code < 100 || rg.Code > 999 || rg.From > rg.To || rg.To >= subscriberSpan || rg.Capacity != rg.To-rg.From+1 || rg.Operator == "" {
				t.Fatalf("range %d: %+v", i, rg)
			}
			if i > 0 && (rs[i-1].Code > rg.Code || rs[i-1].Code == rg.Code && rs[i-1].To >= rg.From) {
				t.Fatalf("ranges %d and %d out of order or overlapping: %+v %+v", i-1, i, rs[i-1], rg)
			}
			for _, sub := range []int{rg.From, rg.To} {
				got, err := r.Check(phone7(uint64(rg.Code)*subscriberSpan + uint64(sub)))
				if rg.Virtual != errors.Is(err, ErrVirtualNumber) || !rg.Virtual && err != nil || got != rg {
					t.Fatalf("Check(%d %07d) = %+v, %v; want %+v", rg.Code, sub, got, err, rg)
				}
			}
		}
	})
}

func BenchmarkRegistryCheck(b *testing.B) {
	r := loadSample(b)
	p := phone7(9219999999)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Check(p); err != nil {
			b.Fatal(err)
		}
	}
}
