# The git revision the build was configured from, for --version: `git
# describe` of the source tree, or "unknown" outside a clone or without git.
# Read at configure time: scripts/build.sh and scripts/package.sh configure
# before they build, so a package names the revision it was built from.
set(STOCKADE_GIT_REVISION "unknown")
find_program(GIT_EXECUTABLE git)
if(GIT_EXECUTABLE)
  execute_process(COMMAND ${GIT_EXECUTABLE} describe --tags --always --dirty
                  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
                  OUTPUT_VARIABLE describe OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE describe_result ERROR_QUIET)
  if(describe_result EQUAL 0 AND NOT describe STREQUAL "")
    set(STOCKADE_GIT_REVISION "${describe}")
  endif()
endif()
message(STATUS "stockade ${PROJECT_VERSION}, git revision ${STOCKADE_GIT_REVISION}")
