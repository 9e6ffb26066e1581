# A thin wrapper over CMake: `make run`, `make test`, `make build`, `make bench`, `make soak`.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
ARGS ?=

.PHONY: all build deps run test bench soak clean format

all: build

deps:
	@./scripts/deps.sh build

$(BUILD)/CMakeCache.txt:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/beagle run $(ARGS)

test:
	@./scripts/deps.sh test
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest -j $(JOBS) --output-on-failure $(ARGS)

bench:
	@./scripts/deps.sh bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@./bench/run.sh

# issue 14's soak table (bench/soak.sh): slowloris, StatsD bombs, full disk, corrupt files
soak:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target beagle
	@BUILD=$(BUILD) ./bench/soak.sh

clean:
	rm -rf $(BUILD)

format:
	clang-format -i core/*/*.c core/*/*.h tests/c/*.c
