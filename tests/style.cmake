# Checks on the source itself (label unit, so they run with the unit tests): the include graph
# follows the layer order, and every C++ file is formatted with the repo's .clang-format.
get_filename_component(UNDERSTUDY_SRC_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  add_test(NAME style.layers COMMAND ${Python3_EXECUTABLE} scripts/check_layers.py
    WORKING_DIRECTORY ${UNDERSTUDY_SRC_ROOT})
  set_tests_properties(style.layers PROPERTIES LABELS unit)
endif()
find_program(CLANG_FORMAT clang-format)
if(CLANG_FORMAT)
  file(GLOB_RECURSE UNDERSTUDY_FORMATTED CONFIGURE_DEPENDS
    ${UNDERSTUDY_SRC_ROOT}/src/*.cpp ${UNDERSTUDY_SRC_ROOT}/src/*.hpp
    ${UNDERSTUDY_SRC_ROOT}/tests/unit/*.cpp ${UNDERSTUDY_SRC_ROOT}/tests/unit/*.hpp
    ${UNDERSTUDY_SRC_ROOT}/fuzz/*.cpp ${UNDERSTUDY_SRC_ROOT}/fuzz/*.hpp)
  add_test(NAME style.format COMMAND ${CLANG_FORMAT} --dry-run -Werror ${UNDERSTUDY_FORMATTED}
    WORKING_DIRECTORY ${UNDERSTUDY_SRC_ROOT})
  set_tests_properties(style.format PROPERTIES LABELS unit)
endif()
# The Python lab package: no sys.path edits, every module imports, pyflakes is clean.
add_test(NAME style.python COMMAND bash scripts/check-python.sh WORKING_DIRECTORY ${UNDERSTUDY_SRC_ROOT})
set_tests_properties(style.python PROPERTIES LABELS unit)
