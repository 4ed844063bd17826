package identity

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nyaruka/phonenumbers"
)

// MaxPhoneLen bounds the raw input ParsePhone reads, in bytes. E.164 allows
// 15 digits; 40 leaves room for a "+", spaces, dashes and brackets
// ("+7 (900) 000-00-01" is 18), and keeps the parser's work small on junk.
const MaxPhoneLen = 40

var (
	// ErrBadPhone is returned for input that is not a valid phone number:
	// too long, characters other than digits, spaces, "+-().", an extension,
	// or digits that libphonenumber's data does not accept as a number.
	ErrBadPhone = errors.New("identity: not a valid phone number")
	// ErrCountryNotAllowed is returned for a valid number whose country
	// calling code is not among those the node allows.
	ErrCountryNotAllowed = errors.New("identity: phone number's country is not allowed")
	// ErrNotMobile is returned for a valid number that is not a mobile one
	// (fixed line, toll free, VoIP, pager and the like).
	ErrNotMobile = errors.New("identity: not a mobile phone number")
)

// Phone is a phone number normalised by ParsePhone.
type Phone struct {
	// E164 is the canonical form, "+" and up to 15 digits: "+79000000001".
	E164 string
	// CountryCode is the country calling code: 7 for Russia.
	CountryCode int
	// National is the national (significant) number as an integer:
	// 9000000001 for +7 900 000-00-01. Leading zeros some plans keep (Italy)
	// are not in it; E164 is the form to store and compare.
	National uint64
	// Region is the ISO 3166 region libphonenumber places the number in:
	// "RU", or "KZ" for the +7 6xx and 7xx numbers Kazakhstan shares
	// country code 7 with Russia for.
	Region string
}

// ParsePhone parses raw as a phone number and normalises it to E.164 with
// libphonenumber's data (github.com/nyaruka/phonenumbers). allowed lists
// the country calling codes the node accepts; a number that starts without
// "+" is read in the main region of allowed[0] (so "8 900 000-00-01" is a
// Russian number when 7 comes first). An empty allowed refuses every number.
//
// The number's type must be MOBILE or FIXED_LINE_OR_MOBILE: the second is
// what libphonenumber says where a plan does not tell mobile from fixed
// numbers (the North American plan, for one), and refusing it would refuse
// the whole country. Where the national plan does tell them apart (Russia),
// fixed lines come back FIXED_LINE and are refused, and the numbering
// registry (Plan) is the finer check.
//
// Errors: ErrBadPhone, ErrCountryNotAllowed, ErrNotMobile, each wrapped
// with the reason.
func ParsePhone(raw string, allowed []int) (Phone, error) {
	if len(raw) > MaxPhoneLen {
		return Phone{}, fmt.Errorf("identity: phone number longer than %d bytes: %w", MaxPhoneLen, ErrBadPhone)
	}
	plus, digits := false, 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '+':
			// Only as the first character that is not a space.
			if plus || digits > 0 {
				return Phone{}, fmt.Errorf("identity: phone number has a misplaced \"+\": %w", ErrBadPhone)
			}
			plus = true
		case c == ' ' || c == '-' || c == '(' || c == ')' || c == '.':
		default:
			// Letters included: libphonenumber would read "FLOWERS" as
			// keypad digits, and a sign-up form has no use for that.
			return Phone{}, fmt.Errorf("identity: phone number has a character other than digits, spaces and \"+-().\": %w", ErrBadPhone)
		}
	}
	if digits == 0 {
		return Phone{}, fmt.Errorf("identity: phone number has no digits: %w", ErrBadPhone)
	}
	region := "ZZ" // unknown region: the number must carry its country code
	if !plus {
		if len(allowed) == 0 {
			return Phone{}, fmt.Errorf("identity: no country calling code allowed: %w", ErrCountryNotAllowed)
		}
		region = phonenumbers.GetRegionCodeForCountryCode(allowed[0])
	}
	num, err := phonenumbers.Parse(raw, region)
	if err != nil {
		return Phone{}, fmt.Errorf("identity: phone number: %v: %w", err, ErrBadPhone)
	}
	if num.GetExtension() != "" {
		return Phone{}, fmt.Errorf("identity: phone number has an extension: %w", ErrBadPhone)
	}
	cc := int(num.GetCountryCode())
	if !slices.Contains(allowed, cc) {
		return Phone{}, fmt.Errorf("identity: country calling code %d: %w", cc, ErrCountryNotAllowed)
	}
	if !phonenumbers.IsValidNumber(num) {
		return Phone{}, fmt.Errorf("identity: phone number is not valid in the plan of +%d: %w", cc, ErrBadPhone)
	}
	switch t := phonenumbers.GetNumberType(num); t {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE:
	default:
		return Phone{}, fmt.Errorf("identity: phone number type %s: %w", numberTypeName(t), ErrNotMobile)
	}
	return Phone{
		E164:        phonenumbers.Format(num, phonenumbers.E164),
		CountryCode: cc,
		National:    num.GetNationalNumber(),
		Region:      phonenumbers.GetRegionCodeForNumber(num),
	}, nil
}

// numberTypeName names libphonenumber's number types for error messages.
func numberTypeName(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.FIXED_LINE:
		return "fixed line"
	case phonenumbers.TOLL_FREE:
		return "toll free"
	case phonenumbers.PREMIUM_RATE:
		return "premium rate"
	case phonenumbers.SHARED_COST:
		return "shared cost"
	case phonenumbers.VOIP:
		return "voip"
	case phonenumbers.PERSONAL_NUMBER:
		return "personal number"
	case phonenumbers.PAGER:
		return "pager"
	case phonenumbers.UAN:
		return "uan"
	case phonenumbers.VOICEMAIL:
		return "voicemail"
	default:
		return "unknown"
	}
}
