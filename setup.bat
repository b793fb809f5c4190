@echo off
rem One-time setup on Windows: creates venv\ and installs requirements.txt into it.
rem Run it again after updating the project. Then start the server with start.bat.
setlocal
cd /d "%~dp0"

rem The py launcher comes with the python.org installer; "python" may be the Microsoft
rem Store stub, which is why the version check below also runs it.
set "PY="
where py >nul 2>nul && set "PY=py -3"
if not defined PY where python >nul 2>nul && set "PY=python"
if not defined PY goto nopython
%PY% -c "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)" >nul 2>nul
if errorlevel 1 goto nopython

if exist "venv\Scripts\python.exe" goto install
echo Creating the virtual environment in venv\ ...
%PY% -m venv venv
if errorlevel 1 goto novenv

:install
echo Installing requirements, this takes a minute ...
"venv\Scripts\python.exe" -m pip install --upgrade pip
if errorlevel 1 goto nopip
"venv\Scripts\python.exe" -m pip install -r requirements.txt
if errorlevel 1 goto nopip
echo.
echo Setup complete. Start the server with start.bat
echo To check this computer: venv\Scripts\python.exe check_system.py
pause
exit /b 0

:nopython
echo.
echo Python 3.9 or newer was not found.
echo Install it from https://www.python.org/downloads/ and tick "Add python.exe to PATH"
echo in the installer, then run setup.bat again.
pause
exit /b 1

:novenv
echo.
echo Could not create the virtual environment in venv\.
echo Delete the venv folder if it exists, check that this folder is writable, and try again.
pause
exit /b 1

:nopip
echo.
echo Installing the requirements failed; see the messages above.
echo Check the internet connection, or a proxy: set HTTPS_PROXY=http://proxy:port
pause
exit /b 1
