package esiasim

import "github.com/gonets/gonets/identity/esia"

// DevPerson returns the sample test person the demo signs in as: Иванов
// Иван Иванович, born 15.03.1990, SNILS 123-456-789 64 (a valid check
// number), a trusted account, neither a student nor a pensioner.
func DevPerson() esia.Person {
	student, pensioner := false, false
	return esia.Person{
		OID:        "1000299654",
		FirstName:  "Иван",
		LastName:   "Иванов",
		MiddleName: "Иванович",
		BirthDate:  "15.03.1990",
		SNILS:      "123-456-789 64",
		Trusted:    true,
		Student:    &student,
		Pensioner:  &pensioner,
	}
}
