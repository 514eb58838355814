module cnpg-rotator/bench/go-password

go 1.23

require github.com/sethvargo/go-password v0.3.1
