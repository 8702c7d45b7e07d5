# The two commands a new user needs; everything else is in README.md.
#
#   make demo   set up the machine, start the local two-region test bed, live traffic
#               on us-east, and strait
#   make test   set up the machine, fetch Kafka, build, start the test bed, run every
#               default test
#
# Both start with scripts/setup, which installs what is missing (Debian/Ubuntu, as root
# or with password-less sudo) or prints the command to run. Kafka's jars come from
# Maven Central (cached in deploy/local/.kafka), librdkafka is compiled by the rdkafka
# crate.
#
# Longer runs: `make video-demo` (real encoded video mirrored across regions, per-video table).

CARGO ?= cargo

.PHONY: setup test demo video-demo build testbed clean-testbed

setup:
	scripts/setup

build: setup
	$(CARGO) build --release --all-targets

testbed: setup
	deploy/local/testbed fetch
	deploy/local/testbed up

test: setup build testbed
	$(CARGO) test --release --no-fail-fast

demo: setup
	scripts/demo

video-demo:
	scripts/video-demo

clean-testbed:
	deploy/local/testbed reset
