# The two commands a new user needs; everything else is in README.md.
#
#   make demo   start the local two-region test bed, live traffic on us-east, and strait
#   make test   fetch Kafka, build, start the test bed, run every default test
#
# Longer runs: `make video-demo` (real encoded video mirrored across regions, per-video table).
#
# Both work on a fresh clone: Kafka's jars come from Maven Central (cached in
# deploy/local/.kafka), librdkafka is compiled by the rdkafka crate.

CARGO ?= cargo

.PHONY: test demo video-demo build testbed clean-testbed

build:
	$(CARGO) build --release --all-targets

testbed:
	deploy/local/testbed fetch
	deploy/local/testbed up

test: build testbed
	$(CARGO) test --release --no-fail-fast

demo:
	scripts/demo

video-demo:
	scripts/video-demo

clean-testbed:
	deploy/local/testbed reset
